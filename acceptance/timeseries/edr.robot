*** Settings ***
Documentation       The time-series service's water levels through OGC API EDR on the stations collection: data
...                 queries advertised, a station's series (locations), position and area queries, CoverageJSON and
...                 CSV (name, start_time, wse, wse_u), parameter-name and datetime; errors are RFC 9457 problems.
Resource            ../resources/common.resource
Suite Setup         Start Service Suite    ${TIMESERIES_PREFIX}
Test Tags           timeseries    readonly    edr


*** Variables ***
${STATION}          GARONNE_KM0328
${COLLECTION}       /collections/stations
${COVJSON}          application/prs.coverage+json


*** Test Cases ***
Collection Advertises Its Data Queries
    [Tags]    smoke    ogc
    ${resp}=    GET JSON    ${COLLECTION}
    FOR    ${query}    IN    position    area    locations    items
        Should Be Equal    ${resp.json()}[data_queries][${query}][link][href]    ${SERVICE_URL}${COLLECTION}/${query}
    END
    Dictionary Should Contain Key    ${resp.json()}[parameter_names]    wse
    Dictionary Should Contain Key    ${resp.json()}[parameter_names]    wse_u
    API Links Should Be Under Base URL    ${resp.json()}[links]
    ${resp}=    GET JSON    /conformance
    List Should Contain Value    ${resp.json()}[conformsTo]    http://www.opengis.net/spec/ogcapi-edr-1/1.1/conf/covjson

A Station Series Is CoverageJSON With Heights And Uncertainties
    [Tags]    smoke    demo
    Require Demo Data
    ${resp}=    GET JSON    ${COLLECTION}/locations/${STATION}
    Should Start With    ${resp.headers}[content-type]    ${COVJSON}
    Should Be Equal    ${resp.json()}[domain][domainType]    PointSeries
    Should Be Equal    ${resp.json()}[parameters][wse][unit][symbol][value]    m
    ${times}=    Set Variable    ${resp.json()}[domain][axes][t][values]
    Should Not Be Empty    ${times}
    Should Match Regexp    ${times}[0]    ^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ$
    Length Should Be    ${resp.json()}[ranges][wse][values]    ${{len($times)}}
    Should Be True    100 < ${resp.json()}[ranges][wse][values][0] < 200
    Should Be True    0 < ${resp.json()}[ranges][wse_u][values][0] < 5

Series As CSV Matches The CoverageJSON
    [Tags]    demo
    Require Demo Data
    ${json}=    GET JSON    ${COLLECTION}/locations/${STATION}    params=datetime=2023-03-01/2023-06-30
    ${csv}=    GET JSON    ${COLLECTION}/locations/${STATION}    params=datetime=2023-03-01/2023-06-30&f=csv
    Should Start With    ${csv.headers}[content-type]    text/csv
    ${lines}=    Split To Lines    ${csv.text}
    Should Be Equal    ${lines}[0]    id,name,longitude,latitude,start_time,wse,wse_u
    ${times}=    Set Variable    ${json.json()}[domain][axes][t][values]
    Length Should Be    ${lines}    ${{len($times) + 1}}
    FOR    ${time}    IN    @{times}
        Should Be True    '2023-03-01' <= $time[:10] <= '2023-06-30'
    END

Position And Area Queries Find The Station
    [Tags]    demo    ogc
    Require Demo Data
    ${one}=    GET JSON    /collections/stations/items/${STATION}
    ${lon}    ${lat}=    Set Variable    ${one.json()}[geometry][coordinates]
    ${resp}=    GET JSON    ${COLLECTION}/position    params=coords=POINT(${lon} ${lat})
    Should Be Equal    ${resp.json()}[type]    CoverageCollection
    Should Be Equal    ${{[c['id'] for c in $resp.json()['coverages']]}}    ${{[$STATION]}}
    ${area}=    Evaluate    "POLYGON(({0} {1}, {2} {1}, {2} {3}, {0} {3}, {0} {1}))".format($lon - 0.01, $lat - 0.01, $lon + 0.01, $lat + 0.01)
    ${resp}=    GET JSON    ${COLLECTION}/area    params=${{{'coords': $area, 'f': 'csv'}}}
    Should Contain    ${resp.text}    ${STATION},

Parameter Name Selects The Ranges
    [Tags]    demo
    Require Demo Data
    ${resp}=    GET JSON    ${COLLECTION}/locations/${STATION}    params=parameter-name=wse
    Should Be Equal    ${{sorted($resp.json()['ranges'])}}    ${{['wse']}}

Bad Coords Datetime And Parameters Are 400 Problems
    [Tags]    errors
    FOR    ${path}    ${params}    IN
    ...    position    coords=POINT(1 2
    ...    position    coords=POINT(1 95)
    ...    area    coords=POINT(1 43)
    ...    locations/${STATION}    datetime=2023-06-30/2023-03-01
    ...    locations/${STATION}    parameter-name=temperature
    ...    locations/${STATION}    crs=EPSG:3857
        ${resp}=    GET JSON    ${COLLECTION}/${path}    params=${params}    expected_status=400
        Response Should Be Problem    ${resp}    400
    END

Unknown Location Is A 404 Problem
    [Tags]    errors    smoke
    ${resp}=    GET JSON    ${COLLECTION}/locations/NO_SUCH_STATION    expected_status=404
    Response Should Be Problem    ${resp}    404
