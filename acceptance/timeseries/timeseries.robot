*** Settings ***
Documentation       The time-series API: hydrology virtual stations as GeoJSON and their water-level series as
...                 JSON and CSV, with date filters; errors are RFC 9457 problems.
Resource            ../resources/common.resource
Suite Setup         Start Service Suite    ${TIMESERIES_PREFIX}
Test Tags           timeseries    readonly


*** Variables ***
${STATION}          GARONNE_KM0328


*** Test Cases ***
Readyz Reports Ready
    [Tags]    smoke    operations
    ${resp}=    GET JSON    /readyz
    Should Be Equal    ${resp.json()}[status]    ready

Stations Are GeoJSON Points With A Series Link
    [Tags]    smoke    demo
    Require Demo Data
    ${resp}=    GET JSON    /stations
    Should Start With    ${resp.headers}[content-type]    application/geo+json
    Should Be Equal    ${resp.json()}[type]    FeatureCollection
    Should Not Be Empty    ${resp.json()}[features]
    FOR    ${feature}    IN    @{resp.json()}[features]
        Should Be Equal    ${feature}[geometry][type]    Point
        Should Be Equal    ${feature}[properties][unit]    m
        Should Be Equal    ${feature}[properties][series_url]    ${SERVICE_URL}/stations/${feature}[id]/series
    END

Bbox Filters Stations
    [Tags]    demo
    Require Demo Data
    ${one}=    GET JSON    /stations/${STATION}
    ${lon}    ${lat}=    Set Variable    ${one.json()}[geometry][coordinates]
    ${bbox}=    Evaluate    ",".join(str(v) for v in ($lon - 0.001, $lat - 0.001, $lon + 0.001, $lat + 0.001))
    ${resp}=    GET JSON    /stations    params=bbox=${bbox}
    ${ids}=    Feature Ids    ${resp.json()}
    List Should Contain Value    ${ids}    ${STATION}
    ${resp}=    GET JSON    /stations    params=bbox=10,10,11,11
    Should Be Empty    ${resp.json()}[features]

Series As JSON Has Heights And Uncertainties
    [Tags]    smoke    demo
    Require Demo Data
    ${resp}=    GET JSON    /stations/${STATION}/series
    Should Be Equal    ${resp.json()}[station]    ${STATION}
    Should Be Equal    ${resp.json()}[unit]    m
    Should Be Equal    ${resp.json()}[reference]    EGM2008
    Should Not Be Empty    ${resp.json()}[points]
    ${point}=    Set Variable    ${resp.json()}[points][0]
    Should Match Regexp    ${point}[time]    ^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ$
    Should Be True    100 < ${point}[height] < 200 and 0 < ${point}[uncertainty] < 5

Series As CSV Matches The JSON
    [Tags]    demo
    Require Demo Data
    ${json}=    GET JSON    /stations/${STATION}/series    params=start=2023-03-01&end=2023-06-30
    ${csv}=    GET JSON    /stations/${STATION}/series    params=start=2023-03-01&end=2023-06-30&format=csv
    Should Start With    ${csv.headers}[content-type]    text/csv
    ${lines}=    Split To Lines    ${csv.text}
    Should Be Equal    ${lines}[0]    time,height_m,uncertainty_m
    ${count}=    Get Length    ${json.json()}[points]
    Length Should Be    ${lines}    ${count + 1}
    FOR    ${point}    IN    @{json.json()}[points]
        Should Be True    '2023-03-01' <= $point['time'][:10] <= '2023-06-30'
    END

Bad Inputs Are 400 Problems
    [Tags]    errors
    FOR    ${query}    IN    ?start\=2023-07-01&end=2023-06-30    ?start\=2023-13-45    ?format\=xml
        ${resp}=    GET JSON    /stations/${STATION}/series${query}    expected_status=400
        Response Should Be Problem    ${resp}    400
    END
    ${resp}=    GET JSON    /stations    params=bbox=1,2,3    expected_status=400
    Response Should Be Problem    ${resp}    400

Unknown Station Is A 404 Problem
    [Tags]    errors    smoke
    ${resp}=    GET JSON    /stations/NO_SUCH_STATION    expected_status=404
    Response Should Be Problem    ${resp}    404
    ${resp}=    GET JSON    /stations/NO_SUCH_STATION/series    expected_status=404
    Response Should Be Problem    ${resp}    404
