*** Settings ***
Documentation       The operations console (``#/console``): only administrators see it; with an admin API key it
...                 draws the SLOs, the alerts with their runbooks, the services' traffic and the database from the
...                 platform's Prometheus, and the traces page lists recent traces. Its proxy (``/console/api/…``)
...                 refuses anonymous callers, users, writes and API paths the console does not read.
Resource            ../resources/web.resource
Suite Setup         Start Web Suite
Suite Teardown      Close All Browsers
Test Tags           web    console    readonly


*** Test Cases ***
Anonymous Users Are Asked To Sign In
    [Tags]    smoke
    Execute Javascript    sessionStorage.clear()
    Go To Page    \#/console
    Reload Page
    Page Should Be Ready
    Wait For Condition    return document.body.dataset.console === 'sign-in'
    Page Should Contain Element    css:#con-signin input[type="password"]
    Browser Should Have No Errors

The Proxy Refuses Anonymous Callers, Writes And Other Paths
    [Tags]    smoke
    ${resp}=    Send Request    GET    /console/api/prometheus/api/v1/query    params=${{ {'query': 'up'} }}
    Response Should Be Problem    ${resp}    401
    ${resp}=    Send Request    POST    /console/api/alertmanager/api/v2/silences    json=${{ {} }}
    Response Should Be Problem    ${resp}    405
    Require Admin Key
    ${resp}=    Send Request    GET    /console/api/prometheus/api/v1/admin/tsdb/snapshot    ${ADMIN_API_KEY}
    Response Should Be Problem    ${resp}    404
    ${resp}=    Send Request    GET    /console/api/prometheus/api/v1/query    ${ADMIN_API_KEY}    params=${{ {'query': 'rate(up[1y])'} }}
    Response Should Be Problem    ${resp}    400

A User Is Not An Administrator
    Require User Key
    ${resp}=    Send Request    GET    /console/api/traces    ${USER_API_KEY}
    Response Should Be Problem    ${resp}    403
    Sign In To The Console    ${USER_API_KEY}
    Wait For Condition    return document.body.dataset.console === 'forbidden'
    Element Should Contain    id:con-forbidden    administrator
    Discard Browser Log    # Chromium logs the refused request (403) as an error: that one was the point

An Administrator Sees The Health Of The Platform
    Require Admin Key
    Sign In To The Console    ${ADMIN_API_KEY}
    Wait For Condition    return ['overview', 'unavailable'].includes(document.body.dataset.console)    timeout=60 s
    ${unavailable}=    Count Of    \#con-unavailable
    Skip If    ${unavailable}    this platform runs no Prometheus for the console
    Wait For Condition    return !!window.eolake.console    timeout=60 s
    Wait Until Page Contains Element    css:#con-slos [data-slo] figure.gauge svg[role="img"]
    Wait Until Page Contains Element    css:#con-services figure.chart-svg svg[role="img"]
    Wait Until Page Contains Element    css:#con-alerts [data-alert="Watchdog"] a.runbook
    Page Should Contain Element    css:#con-database figure.gauge
    Page Should Not Contain Element    css:#content table
    Browser Should Have No Errors

An Administrator Sees The Recent Traces
    Require Admin Key
    Go To Page    \#/console/traces
    Wait For Condition    return ['traces', 'unavailable'].includes(document.body.dataset.console)    timeout=60 s
    ${unavailable}=    Count Of    \#con-unavailable
    IF    ${unavailable}
        # No trace store on this platform (Kubernetes, on-premise): the page says so (its proxy answered 503).
        Element Should Be Visible    css:#con-unavailable
    ELSE
        Page Should Contain Element    css:#trace-form input#trace-id
        Page Should Contain Element    css:.con-traces[data-kind="recent"]
        Browser Should Have No Errors
    END


*** Keywords ***
Discard Browser Log
    ${driver}=    Get Library Instance    SeleniumLibrary
    Call Method    ${driver.driver}    get_log    browser

Sign In To The Console
    [Arguments]    ${key}
    Execute Javascript    sessionStorage.clear()
    Go To Page    \#/console
    Reload Page    # the same route again draws nothing new: a fresh load does
    Page Should Be Ready
    Wait For Condition    return document.body.dataset.console === 'sign-in'
    ${level}=    Set Log Level    NONE
    TRY
        Input Password    id:con-signin-key    ${key}
    FINALLY
        Set Log Level    ${level}
    END
    Click Button    css:#con-signin button[type="submit"]
