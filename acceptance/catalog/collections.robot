*** Settings ***
Documentation       Collections: the list, one collection, its items, free-text collection search.
Resource            ../resources/common.resource
Suite Setup         Start Service Suite    ${CATALOG_PREFIX}
Test Tags           catalog    readonly


*** Test Cases ***
Collections List Is Well Formed
    [Tags]    smoke
    ${resp}=    GET JSON    /collections
    Response Should Be JSON    ${resp}
    ${body}=    Set Variable    ${resp.json()}
    API Links Should Be Under Base URL    ${body}[links]
    FOR    ${collection}    IN    @{body}[collections]
        Should Be Equal    ${collection}[type]    Collection
        Should Not Be Empty    ${collection}[id]
        Dictionary Should Contain Key    ${collection}    extent
        API Links Should Be Under Base URL    ${collection}[links]
    END

Demo Collections Are Listed
    [Tags]    smoke    demo
    Require Demo Data
    ${resp}=    GET JSON    /collections    params=limit=100
    ${ids}=    Evaluate    [c['id'] for c in $resp.json()['collections']]
    FOR    ${id}    IN    @{DEMO_COLLECTIONS}
        List Should Contain Value    ${ids}    ${id}
    END

Collection Detail Links Back To Its Items
    [Tags]    demo
    Require Demo Data
    ${resp}=    GET JSON    /collections/naip
    ${collection}=    Set Variable    ${resp.json()}
    Should Be Equal    ${collection}[id]    naip
    Should Be Equal    ${collection}[type]    Collection
    Should Not Be Empty    ${collection}[extent][spatial][bbox]
    Should Not Be Empty    ${collection}[extent][temporal][interval]
    API Links Should Be Under Base URL    ${collection}[links]
    ${items}=    Link Href    ${collection}[links]    items
    Should Be Equal    ${items}    ${SERVICE_URL}/collections/naip/items

Every Listed Collection Can Be Fetched
    ${resp}=    GET JSON    /collections
    FOR    ${collection}    IN    @{resp.json()}[collections]
        ${one}=    GET JSON    /collections/${collection}[id]
        Should Be Equal    ${one.json()}[id]    ${collection}[id]
    END

Garonne Collections Hold The Demo Items
    [Tags]    demo
    Require Demo Data
    ${wse}=    GET JSON    /collections/garonne-wse/items    params=limit=100
    Length Should Be    ${wse.json()}[features]    24
    ${stations}=    GET JSON    /collections/garonne-virtual-stations/items    params=limit=100
    Length Should Be    ${stations.json()}[features]    6

Collection Items Are GeoJSON Features Of That Collection
    [Tags]    demo
    Require Demo Data
    ${resp}=    GET JSON    /collections/garonne-wse/items    params=limit=5
    Should Start With    ${resp.headers}[content-type]    application/geo+json
    ${body}=    Set Variable    ${resp.json()}
    Should Be Equal    ${body}[type]    FeatureCollection
    Length Should Be    ${body}[features]    5
    FOR    ${feature}    IN    @{body}[features]
        Should Be Equal    ${feature}[type]    Feature
        Should Be Equal    ${feature}[collection]    garonne-wse
        Dictionary Should Contain Key    ${feature}[properties]    datetime
    END

Free Text Collection Search Finds NAIP
    [Tags]    demo
    Require Demo Data
    ${resp}=    GET JSON    /collections    params=q=naip
    ${ids}=    Evaluate    [c['id'] for c in $resp.json()['collections']]
    List Should Contain Value    ${ids}    naip
    List Should Not Contain Value    ${ids}    garonne-wse
