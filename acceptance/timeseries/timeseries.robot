*** Settings ***
Documentation       The time-series service's stations and water levels as OGC API Features collections: landing
...                 page and conformance, GeoJSON points with links to their water levels, bbox, CQL2 filters (text
...                 and JSON), CSV (name, start_time, wse, wse_u for water levels), paging by next links; errors are
...                 RFC 9457 problems.
Resource            ../resources/common.resource
Suite Setup         Start Service Suite    ${TIMESERIES_PREFIX}
Test Tags           timeseries    readonly


*** Variables ***
${STATION}          GARONNE_KM0328
${ITEMS}            /collections/stations/items
${FEATURES}         http://www.opengis.net/spec/ogcapi-features-1/1.0/conf
${FILTERING}        http://www.opengis.net/spec/ogcapi-features-3/1.0/conf


*** Test Cases ***
Readyz Reports Ready
    [Tags]    smoke    operations
    ${resp}=    GET JSON    /readyz
    Should Be Equal    ${resp.json()}[status]    ready

Landing Page Links Conformance And Collections
    [Tags]    smoke    ogc
    ${resp}=    GET JSON    /
    API Links Should Be Under Base URL    ${resp.json()}[links]
    ${conformance}=    Link Href    ${resp.json()}[links]    conformance
    Should Be Equal    ${conformance}    ${SERVICE_URL}/conformance
    ${resp}=    GET JSON    /conformance
    FOR    ${class}    IN    ${FEATURES}/core    ${FEATURES}/geojson    ${FILTERING}/filter
    ...    ${FILTERING}/queryables    http://www.opengis.net/spec/cql2/1.0/conf/cql2-text
        List Should Contain Value    ${resp.json()}[conformsTo]    ${class}
    END
    ${resp}=    GET JSON    /collections
    ${ids}=    Evaluate    [c['id'] for c in $resp.json()['collections']]
    Should Be Equal    ${ids}    ${{['stations', 'water-levels']}}

Stations Are GeoJSON Points With A Water Level Link
    [Tags]    smoke    demo
    Require Demo Data
    ${resp}=    GET JSON    ${ITEMS}    params=limit=100
    Should Start With    ${resp.headers}[content-type]    application/geo+json
    Should Be Equal    ${resp.json()}[type]    FeatureCollection
    Should Not Be Empty    ${resp.json()}[features]
    Should Be Equal As Integers    ${resp.json()}[numberMatched]    ${resp.json()}[numberReturned]
    FOR    ${feature}    IN    @{resp.json()}[features]
        Should Be Equal    ${feature}[geometry][type]    Point
        Should Be Equal    ${feature}[properties][unit]    m
        ${data}=    Link Href    ${feature}[links]    data
        Should Be Equal    ${data}    ${SERVICE_URL}/collections/stations/locations/${feature}[id]
    END

Bbox Filters Stations
    [Tags]    demo
    Require Demo Data
    ${one}=    GET JSON    ${ITEMS}/${STATION}
    ${lon}    ${lat}=    Set Variable    ${one.json()}[geometry][coordinates]
    ${bbox}=    Evaluate    ",".join(str(v) for v in ($lon - 0.001, $lat - 0.001, $lon + 0.001, $lat + 0.001))
    ${resp}=    GET JSON    ${ITEMS}    params=bbox=${bbox}
    ${ids}=    Feature Ids    ${resp.json()}
    List Should Contain Value    ${ids}    ${STATION}
    ${resp}=    GET JSON    ${ITEMS}    params=bbox=10,10,11,11
    Should Be Empty    ${resp.json()}[features]

CQL2 Filters In Text And JSON Agree
    [Tags]    demo    ogc
    Require Demo Data
    ${text}=    GET JSON    ${ITEMS}    params=filter=river = 'GARONNE' AND measurements > 20&limit=100
    ${json}=    Evaluate    json.dumps({"op": "and", "args": [{"op": "=", "args": [{"property": "river"}, "GARONNE"]}, {"op": ">", "args": [{"property": "measurements"}, 20]}]})    modules=json
    ${resp}=    GET JSON    ${ITEMS}    params=${{{'filter': $json, 'filter-lang': 'cql2-json', 'limit': 100}}}
    ${ids}=    Feature Ids    ${text.json()}
    List Should Contain Value    ${ids}    ${STATION}
    Should Be Equal    ${ids}    ${{[f['id'] for f in $resp.json()['features']]}}
    FOR    ${feature}    IN    @{text.json()}[features]
        Should Be Equal    ${feature}[properties][river]    GARONNE
    END

Stations As CSV
    [Tags]    demo
    Require Demo Data
    ${resp}=    GET JSON    ${ITEMS}    params=f=csv&limit=100
    Should Start With    ${resp.headers}[content-type]    text/csv
    ${lines}=    Split To Lines    ${resp.text}
    Should Start With    ${lines}[0]    id,name,river,basin,longitude,latitude,start_time,end_time,measurements
    Should Contain    ${resp.text}    ${STATION},

Water Levels As CSV Chosen With CQL2
    [Tags]    demo    ogc
    Require Demo Data
    ${one}=    GET JSON    ${ITEMS}/${STATION}
    ${name}=    Set Variable    ${one.json()}[properties][name]
    ${filter}=    Set Variable    name = '${name}' AND start_time >= TIMESTAMP('2023-04-01T00:00:00Z')
    ${resp}=    GET JSON    /collections/water-levels/items    params=${{{'filter': $filter, 'f': 'csv', 'limit': 1000}}}
    Should Start With    ${resp.headers}[content-type]    text/csv
    ${lines}=    Split To Lines    ${resp.text}
    Should Start With    ${lines}[0]    name,start_time,wse,wse_u
    Should Be True    len($lines) > 1
    FOR    ${line}    IN    @{lines}[1:]
        Should Start With    ${line}    ${name},2023-
        Should Be True    $line.split(',')[1] >= '2023-04-01'
    END

Paging Follows Next Links
    [Tags]    demo    ogc
    Require Demo Data
    ${all}=    GET JSON    ${ITEMS}    params=limit=100
    ${resp}=    GET JSON    ${ITEMS}    params=limit=2
    ${seen}=    Feature Ids    ${resp.json()}
    ${next}=    Link    ${resp.json()}[links]    next
    WHILE    $next is not None    limit=50
        Should Start With    ${next}[href]    ${SERVICE_URL}/
        ${resp}=    GET    ${next}[href]    expected_status=200
        ${ids}=    Feature Ids    ${resp.json()}
        ${seen}=    Combine Lists    ${seen}    ${ids}
        ${next}=    Link    ${resp.json()}[links]    next
    END
    ${expected}=    Feature Ids    ${all.json()}
    Should Be Equal    ${seen}    ${expected}

Bad Inputs Are 400 Problems
    [Tags]    errors
    FOR    ${params}    IN    bbox=1,2,3    limit=0    filter=colour = 'red'    filter=river = = 1
    ...    datetime=2023-13-45    f=xml    colour=red
        ${resp}=    GET JSON    ${ITEMS}    params=${params}    expected_status=400
        Response Should Be Problem    ${resp}    400
    END

Unknown Station Is A 404 Problem
    [Tags]    errors    smoke
    ${resp}=    GET JSON    ${ITEMS}/NO_SUCH_STATION    expected_status=404
    Response Should Be Problem    ${resp}    404
    ${resp}=    GET JSON    /collections/nope/items    expected_status=404
    Response Should Be Problem    ${resp}    404
