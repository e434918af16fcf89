*** Settings ***
Documentation       What operators and load balancers rely on: health, readiness, metrics, request ids, and
...                 links that never come from the Host header.
Resource            ../resources/common.resource
Suite Setup         Start Service Suite    ${CATALOG_PREFIX}
Test Tags           catalog    operations    readonly


*** Variables ***
${HOSTILE_HOST}     attacker.example.invalid


*** Test Cases ***
Healthz Answers
    [Tags]    smoke
    ${resp}=    GET JSON    /healthz
    Response Should Be JSON    ${resp}
    Response Should Have Request Id    ${resp}

Readyz Reports Ready With Its Checks
    [Tags]    smoke
    ${resp}=    GET JSON    /readyz
    Should Be Equal    ${resp.json()}[status]    ready
    Dictionary Should Contain Key    ${resp.json()}    checks

Metrics Expose The Request Counter
    [Tags]    smoke
    # One request first, so the counter has a sample even on a fresh instance.
    GET JSON    /
    ${resp}=    GET JSON    /metrics
    Should Start With    ${resp.headers}[content-type]    text/plain
    Should Contain    ${resp.text}    eolake_http_requests_total
    Should Match Regexp    ${resp.text}    (?m)^eolake_http_requests_total\\{.*service="catalog".*\\} \\d

Request Id Is Echoed
    [Tags]    smoke
    ${rid}=    Generate Random String    16    [LOWER][NUMBERS]
    ${headers}=    Create Dictionary    X-Request-ID=acceptance-${rid}
    ${resp}=    GET JSON    /    headers=${headers}
    Response Should Have Request Id    ${resp}    acceptance-${rid}
    ${resp}=    GET JSON    /collections/no-such-collection-acceptance    headers=${headers}    expected_status=404
    ${problem}=    Response Should Be Problem    ${resp}    404
    Should Be Equal    ${problem}[request_id]    acceptance-${rid}

Invalid Request Id Is Replaced
    ${headers}=    Create Dictionary    X-Request-ID=not a valid id\t<script>
    ${resp}=    GET JSON    /    headers=${headers}
    ${rid}=    Response Should Have Request Id    ${resp}
    Should Match Regexp    ${rid}    ^[A-Za-z0-9._:-]{1,128}$

Every Response Carries A Request Id
    FOR    ${path}    IN    /    /conformance    /collections    /search    /readyz    /metrics
        ${resp}=    GET JSON    ${path}
        Response Should Have Request Id    ${resp}
    END

Hostile Host Header Does Not Appear In Links
    [Tags]    smoke    security
    ${headers}=    Create Dictionary    Host=${HOSTILE_HOST}    X-Forwarded-Host=${HOSTILE_HOST}
    ...    X-Forwarded-Proto=gopher    Forwarded=host=${HOSTILE_HOST};proto=gopher
    FOR    ${path}    IN    /    /collections    /search?limit=1
        ${resp}=    GET On Session    ${SERVICE}    ${path}    headers=${headers}    expected_status=any
        Should Not Contain    ${resp.text}    ${HOSTILE_HOST}
        Should Not Contain    ${resp.text}    gopher:
        # An ingress may refuse an unknown host (404/421): that is fine too, as long as nothing is reflected.
        IF    ${resp.status_code} == 200
            API Links Should Be Under Base URL    ${resp.json()}[links]
        END
    END
