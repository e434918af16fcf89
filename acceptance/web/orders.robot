*** Settings ***
Documentation       Ordering from the web view: anonymous users are asked to sign in; with ``${USER_API_KEY}``, two
...                 demo items go from a search into the basket, are ordered, the order finishes, and a file is
...                 downloaded through /downloads and checked against its SHA-256 in the page.
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

Storage Paths Are Never Shown
    [Tags]    demo    readonly
    Require Demo Data
    Go To Page    \#/items/garonne-wse/garonne-wse-2023-01-01
    Wait Until Page Contains Element    css:#assets
    Page Should Not Contain    data/demo
    Page Should Contain Element    css:#assets a[href="#/basket"]

Basket To Order To Verified Download
    [Tags]    demo    downloads
    Require Demo Data
    Require User Key
    Execute Javascript    localStorage.clear(); sessionStorage.clear()
    Go To Page    \#/search?collections=garonne-wse
    Wait For Condition    return document.querySelectorAll('#s-results button.basket-toggle').length > 1
    Execute Javascript    [...document.querySelectorAll('#s-results button.basket-toggle')].slice(0, 2).forEach(b => b.click())
    Element Text Should Be    css:nav a[data-nav="basket"]    Basket (2)
    Go To Page    \#/basket
    Input Password    id:b-signin-key    ${USER_API_KEY}
    Click Button    css:#b-signin button
    Wait Until Page Contains Element    id:b-order
    Click Button    id:b-order
    Wait For Condition    return document.getElementById('od-badge')?.textContent === 'succeeded'    timeout=${ORDER_TIMEOUT}
    Click Button    css:#od-files button.dl-file
    Wait For Condition    return document.querySelector('#od-files td.dl[data-verified]') !== null
    Element Attribute Value Should Be    css:#od-files td.dl[data-verified]    data-verified    true
    Browser Should Have No Errors
