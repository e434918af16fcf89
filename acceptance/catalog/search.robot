*** Settings ***
Documentation       Item search (GET and POST): bbox, datetime, CQL2 filter, sort, limit and pagination.
...                 The data-specific checks use the NAIP demo collection (1,000 real items in Alabama,
...                 seven survey years).
Resource            ../resources/common.resource
Suite Setup         Start Service Suite    ${CATALOG_PREFIX}
Test Tags           catalog    search    readonly


*** Variables ***
# West, south, east, north: part of the NAIP demo tiles.
@{NAIP_BBOX}        ${-86.0}    ${30.5}    ${-85.5}    ${31.0}


*** Test Cases ***
Search Respects The Limit
    [Tags]    smoke
    ${resp}=    GET JSON    /search    params=limit=3
    Should Start With    ${resp.headers}[content-type]    application/geo+json
    Should Be Equal    ${resp.json()}[type]    FeatureCollection
    ${count}=    Get Length    ${resp.json()}[features]
    Should Be True    ${count} <= 3
    API Links Should Be Under Base URL    ${resp.json()}[links]

Search By Bbox Returns Only Intersecting Items
    [Tags]    demo
    Require Demo Data
    ${bbox}=    Catenate    SEPARATOR=,    @{NAIP_BBOX}
    ${resp}=    GET JSON    /search    params=collections=naip&bbox=${bbox}&limit=100
    ${features}=    Set Variable    ${resp.json()}[features]
    Should Not Be Empty    ${features}
    FOR    ${f}    IN    @{features}
        ${b}=    Set Variable    ${f}[bbox]
        Should Be True    $b[0] <= $NAIP_BBOX[2] and $b[2] >= $NAIP_BBOX[0] and $b[1] <= $NAIP_BBOX[3] and $b[3] >= $NAIP_BBOX[1]
        ...    ${f}[id] ${b} does not intersect ${NAIP_BBOX}
    END

Search By Datetime Interval
    [Tags]    demo
    Require Demo Data
    ${resp}=    GET JSON    /search
    ...    params=collections=naip&datetime=2019-01-01T00:00:00Z/2019-12-31T23:59:59Z&limit=1000
    ${years}=    Evaluate    sorted({f['properties']['datetime'][:4] for f in $resp.json()['features']})
    Lists Should Be Equal    ${years}    ${{ ['2019'] }}
    Length Should Be    ${resp.json()}[features]    143

CQL2 Text Filter On A NAIP Property
    [Tags]    demo    cql2
    Require Demo Data
    ${params}=    Create Dictionary    collections=naip    filter-lang=cql2-text
    ...    filter=gsd < 1 AND naip:year <> '2019'    limit=1000
    ${resp}=    GET JSON    /search    params=${params}
    ${features}=    Set Variable    ${resp.json()}[features]
    # The demo tiles: 2019 and 2023 at 0.6 m, 2021 at 0.3 m, the other years at 1 m.
    Length Should Be    ${features}    286
    FOR    ${f}    IN    @{features}
        Should Not Be Equal    ${f}[properties][naip:year]    2019
        Should Be True    ${f}[properties][gsd] < 1
    END

CQL2 JSON Filter With POST
    [Tags]    demo    cql2
    Require Demo Data
    ${filter}=    Evaluate
    ...    {"op": "and", "args": [{"op": "=", "args": [{"property": "naip:year"}, "2023"]}, {"op": "<", "args": [{"property": "gsd"}, 1]}]}
    ${body}=    Create Dictionary    collections=${{ ['naip'] }}    filter-lang=cql2-json    filter=${filter}
    ...    limit=${1000}
    ${resp}=    POST JSON    /search    ${body}
    ${features}=    Set Variable    ${resp.json()}[features]
    Length Should Be    ${features}    143
    FOR    ${f}    IN    @{features}
        Should Be Equal    ${f}[properties][naip:year]    2023
        Should Be True    ${f}[properties][gsd] < 1
    END

Sort By Datetime Both Ways
    [Tags]    demo
    Require Demo Data
    ${down}=    GET JSON    /search    params=collections=naip&sortby=-properties.datetime&limit=20
    ${dates}=    Evaluate    [f['properties']['datetime'] for f in $down.json()['features']]
    Lists Should Be Equal    ${dates}    ${{ sorted($dates, reverse=True) }}
    Should Start With    ${dates}[0]    2023
    ${body}=    Evaluate    {"collections": ["naip"], "limit": 20, "sortby": [{"field": "properties.datetime", "direction": "asc"}]}
    ${up}=    POST JSON    /search    ${body}
    ${dates}=    Evaluate    [f['properties']['datetime'] for f in $up.json()['features']]
    Lists Should Be Equal    ${dates}    ${{ sorted($dates) }}
    Should Start With    ${dates}[0]    2011

Pagination Follows Next Links Without Repeating Items
    [Tags]    demo    pagination
    Require Demo Data
    ${resp}=    GET JSON    /search    params=collections=naip&limit=400
    ${seen}=    Feature Ids    ${resp.json()}
    ${next}=    Link    ${resp.json()}[links]    next
    WHILE    $next is not None    limit=10
        Should Start With    ${next}[href]    ${SERVICE_URL}/
        ${resp}=    GET    ${next}[href]    timeout=${REQUEST_TIMEOUT}
        ${ids}=    Feature Ids    ${resp.json()}
        Append To List    ${seen}    @{ids}
        ${next}=    Link    ${resp.json()}[links]    next
    END
    Length Should Be    ${seen}    1000
    List Should Not Contain Duplicates    ${seen}

POST Pagination Uses The Body Of The Next Link
    [Tags]    demo    pagination
    Require Demo Data
    ${body}=    Evaluate    {"collections": ["naip"], "limit": 2}
    ${first}=    POST JSON    /search    ${body}
    ${next}=    Link    ${first.json()}[links]    next
    Should Not Be Equal    ${next}    ${None}    first page has no next link
    Should Be Equal    ${next}[method]    POST
    Should Start With    ${next}[href]    ${SERVICE_URL}/
    ${second}=    POST On Session    ${SERVICE}    /search    json=${next}[body]
    ${ids}=    Feature Ids    ${first.json()}
    ${more}=    Feature Ids    ${second.json()}
    Length Should Be    ${more}    2
    FOR    ${id}    IN    @{more}
        List Should Not Contain Value    ${ids}    ${id}
    END

Fields Extension Trims Properties
    [Tags]    demo
    Require Demo Data
    ${resp}=    GET JSON    /search    params=collections=naip&limit=2&fields=id,properties.naip:year
    FOR    ${f}    IN    @{resp.json()}[features]
        Dictionary Should Contain Key    ${f}[properties]    naip:year
        Dictionary Should Not Contain Key    ${f}[properties]    proj:transform
    END
