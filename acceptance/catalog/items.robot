*** Settings ***
Documentation       Fetching one item, by the link the API gives and by its id.
Resource            ../resources/common.resource
Suite Setup         Start Service Suite    ${CATALOG_PREFIX}
Test Tags           catalog    readonly


*** Test Cases ***
Item Fetched By Its Self Link Matches The Search Result
    [Tags]    smoke
    ${resp}=    GET JSON    /search    params=limit=1
    Skip If    not $resp.json()['features']    the catalog holds no items
    ${found}=    Set Variable    ${resp.json()}[features][0]
    ${self}=    Link Href    ${found}[links]    self
    Should Be Equal    ${self}    ${SERVICE_URL}/collections/${found}[collection]/items/${found}[id]
    ${item}=    GET    ${self}    timeout=${REQUEST_TIMEOUT}
    Should Start With    ${item.headers}[content-type]    application/geo+json
    Should Be Equal    ${item.json()}[id]    ${found}[id]
    Should Be Equal    ${item.json()}[collection]    ${found}[collection]
    Response Should Have Request Id    ${item}

Demo Item Is Complete
    [Tags]    demo
    Require Demo Data
    ${resp}=    GET JSON    /collections/naip/items    params=limit=1
    ${id}=    Set Variable    ${resp.json()}[features][0][id]
    ${item}=    GET JSON    /collections/naip/items/${id}
    ${feature}=    Set Variable    ${item.json()}
    Should Be Equal    ${feature}[type]    Feature
    Should Be Equal    ${feature}[geometry][type]    Polygon
    Length Should Be    ${feature}[bbox]    4
    Dictionary Should Contain Key    ${feature}[assets]    image
    Dictionary Should Contain Key    ${feature}[properties]    naip:year
    API Links Should Be Under Base URL    ${feature}[links]
    ${collection}=    Link Href    ${feature}[links]    collection
    Should Be Equal    ${collection}    ${SERVICE_URL}/collections/naip
