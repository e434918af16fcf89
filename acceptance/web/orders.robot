*** Settings ***
Documentation       Ordering from the web view: anonymous users are asked to sign in (at the platform's identity
...                 provider when it has one, or with an API key); with ``${USER_API_KEY}``, two demo items go into the
...                 basket, one from a search and one from its item page, are ordered, the order finishes file by file,
...                 and every file is downloaded through /downloads and checked against its SHA-256 in the page.
Resource            ../resources/web.resource
Suite Setup         Start Web Suite
Suite Teardown      Close All Browsers
Test Tags           web    orders


*** Variables ***
${ORDER_TIMEOUT}        3 min


*** Test Cases ***
Anonymous Users Are Asked To Sign In
    [Tags]    smoke    readonly
    Go To Page    \#/orders
    Wait Until Page Contains Element    id:o-signin
    Page Should Contain Element    css:#o-signin input[type="password"]

Sign In Goes To The Platform's Identity Provider
    [Documentation]    With an OIDC issuer configured, the sign-in button is offered and the issuer's discovery
    ...    document names it and the endpoints the page uses (authorization code with PKCE); without one, API keys only.
    [Tags]    readonly    auth
    ${config}=    GET On Session    web    /config.json
    ${oidc}=    Set Variable    ${config.json()}[oidc]
    Go To Page    \#/orders
    Wait Until Page Contains Element    id:o-signin
    IF    $oidc
        Page Should Contain Button    id:o-signin-oidc
        ${discovery}=    GET    ${oidc}[issuer]/.well-known/openid-configuration    expected_status=200
        Should Be Equal    ${discovery.json()}[issuer]    ${oidc}[issuer]
        Dictionary Should Contain Key    ${discovery.json()}    authorization_endpoint
        Dictionary Should Contain Key    ${discovery.json()}    token_endpoint
        ${methods}=    Evaluate    $discovery.json().get('code_challenge_methods_supported', ['S256'])
        List Should Contain Value    ${methods}    S256
        ${csp}=    GET On Session    web    /
        Should Contain    ${csp.headers}[content-security-policy]    ${oidc}[issuer]
    ELSE
        Page Should Not Contain Element    id:o-signin-oidc
    END

Storage Paths Are Never Shown
    [Tags]    demo    readonly
    Require Demo Data
    Go To Page    \#/items/garonne-wse/garonne-wse-2023-01-01
    Wait Until Page Contains Element    css:#assets
    Page Should Not Contain    data/demo
    Page Should Contain Element    css:#assets a[href="#/basket"]

Basket To Order To Verified Downloads
    [Tags]    demo    downloads
    Require Demo Data
    Require User Key
    Execute Javascript    localStorage.clear(); sessionStorage.clear()
    Go To Page    \#/search?collections=garonne-wse
    Wait For Condition    return document.querySelectorAll('#s-results button.basket-toggle').length > 1
    Click Button    css:#s-results li:first-child button.basket-toggle
    Go To Page    \#/items/garonne-wse/garonne-wse-2023-06-30
    Wait Until Page Contains Element    css:main button.basket-toggle
    Click Button    css:main button.basket-toggle
    Element Text Should Be    css:nav a[data-nav="basket"]    Basket (2)
    Go To Page    \#/basket
    Input Password    id:b-signin-key    ${USER_API_KEY}
    Click Button    css:#b-signin button
    Wait Until Page Contains Element    id:b-order
    Click Button    id:b-order
    Wait For Condition    return document.getElementById('od-badge')?.textContent === 'succeeded'    timeout=${ORDER_TIMEOUT}
    ${files}=    Count Of    \#od-files tbody tr
    Should Be True    ${files} >= 2
    Element Attribute Value Should Be    id:od-progress    value    ${files}
    Execute Javascript    document.querySelectorAll('#od-files button.dl-file').forEach((b) => b.click())
    Wait For Condition    return document.querySelectorAll('#od-files td.dl[data-verified="true"]').length === ${files}
    Browser Should Have No Errors
