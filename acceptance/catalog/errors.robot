*** Settings ***
Documentation       Errors are RFC 9457 problems (application/problem+json with type, title, status, detail
...                 and request_id), with the right status.
Resource            ../resources/common.resource
Suite Setup         Start Service Suite    ${CATALOG_PREFIX}
Test Tags           catalog    errors    readonly


*** Test Cases ***
Unknown Collection Is A 404 Problem
    [Tags]    smoke
    ${resp}=    GET JSON    /collections/no-such-collection-acceptance    expected_status=404
    ${problem}=    Response Should Be Problem    ${resp}    404
    Should Contain    ${problem}[detail]    no-such-collection-acceptance

Unknown Item Is A 404 Problem
    ${resp}=    GET JSON    /collections
    Skip If    not $resp.json()['collections']    the catalog holds no collections
    ${collection}=    Set Variable    ${resp.json()}[collections][0][id]
    ${resp}=    GET JSON    /collections/${collection}/items/no-such-item-acceptance    expected_status=404
    Response Should Be Problem    ${resp}    404

Invalid Limit Is A 400 Problem
    FOR    ${limit}    IN    0    -1    many
        ${resp}=    GET JSON    /search    params=limit=${limit}    expected_status=400
        ${problem}=    Response Should Be Problem    ${resp}    400
        Should Contain    ${problem}[detail]    limit
    END

Bad CQL2 Text Is A 400 Problem
    [Tags]    cql2
    ${params}=    Create Dictionary    filter-lang=cql2-text    filter=naip:year ===
    ${resp}=    GET JSON    /search    params=${params}    expected_status=400
    Response Should Be Problem    ${resp}    400

Bad CQL2 JSON Is A 400 Problem
    [Tags]    cql2
    ${body}=    Evaluate
    ...    {"filter-lang": "cql2-json", "filter": {"op": "no-such-operator", "args": [{"property": "id"}, "x"]}}
    ${resp}=    POST JSON    /search    ${body}    expected_status=400
    Response Should Be Problem    ${resp}    400

Malformed JSON Body Is A 400 Problem
    ${headers}=    Create Dictionary    Content-Type=application/json
    ${resp}=    POST On Session    ${SERVICE}    /search    data={"limit":    headers=${headers}
    ...    expected_status=any
    Response Should Be Problem    ${resp}    400

Transaction Without A Key Is A 401 Problem
    [Tags]    smoke    auth
    ${body}=    Create Dictionary    id=acceptance-unauthenticated    type=Collection
    ${resp}=    POST JSON    /collections    ${body}    expected_status=401
    Response Should Be Problem    ${resp}    401
    ${resp}=    DELETE Resource    /collections/acceptance-unauthenticated    expected_status=401
    Response Should Be Problem    ${resp}    401

Transaction With A Wrong Key Is A 401 Problem
    [Tags]    auth
    ${body}=    Create Dictionary    id=acceptance-bad-key    type=Collection
    ${resp}=    POST JSON    /collections    ${body}    expected_status=401    api_key=not-a-real-key
    Response Should Be Problem    ${resp}    401

Transaction With A User Key Is A 403 Problem
    [Tags]    auth
    Require User Key
    ${body}=    Create Dictionary    id=acceptance-user-key    type=Collection
    ${resp}=    POST JSON    /collections    ${body}    expected_status=403    api_key=${USER_API_KEY}
    Response Should Be Problem    ${resp}    403
