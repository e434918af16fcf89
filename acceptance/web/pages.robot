*** Settings ***
Documentation       The web view in a real browser: collections, search, an item
...                 with its tile preview, a station on its river with its water-level chart, the basemap, and every
...                 page at phone width.
Resource            ../resources/web.resource
Suite Setup         Start Web Suite
Suite Teardown      Close All Browsers
Test Tags           web    readonly


*** Variables ***
# Pages besides the sections of the navigation (which are all checked); DEMO_PAGES need the demo data.
@{PAGES}            \#/no-such-page
@{DEMO_PAGES}       \#/collections/garonne-wse    \#/collections/sentinel-2-l2a
...                 \#/search?collections=garonne-wse    \#/items/garonne-wse/garonne-wse-2023-01-01
...                 \#/hydrology/GARONNE_KM0328


*** Test Cases ***
Page Loads With Its Navigation And Landmarks
    [Tags]    smoke
    Go To Page    \#/collections
    Title Should Be    Collections · eolake
    Page Should Contain Element    css:header nav a[href="#/search"]
    Page Should Contain Element    css:main#content
    Page Should Contain Element    css:section.map-panel[aria-label="Map"]
    Wait Until Page Contains Element    css:#coll-list li
    Browser Should Have No Errors

Collections List Shows The Demo Collections
    [Tags]    demo
    Require Demo Data
    Go To Page    \#/collections
    Wait Until Page Contains Element    css:#coll-list a[href="#/collections/garonne-wse"]
    Click Link    css:#coll-list a[href="#/collections/garonne-wse"]
    Wait Until Element Contains    css:main h1    Garonne
    Page Should Contain    Demo data

Search Shows Results
    [Tags]    smoke    search
    Go To Page    \#/search
    Click Button    id:s-submit
    Wait Until Page Contains Element    css:#s-results li
    ${count}=    Count Of    \#s-results li
    Should Be True    ${count} >= 1
    Browser Should Have No Errors

Item Page Shows The Tile Preview
    [Tags]    demo    tiles
    Require Demo Data
    Go To Page    \#/search?collections=garonne-wse
    Wait Until Page Contains Element    css:#s-results li a
    Click Element    css:#s-results li a
    Wait Until Page Contains Element    css:#assets
    Page Should Contain Element    css:#properties
    Wait For Condition    return Number(document.getElementById('map').dataset.previewTiles || 0) > 0
    Element Should Contain    id:preview-status    Showing
    Browser Should Have No Errors

Station Chart Renders
    [Tags]    demo    timeseries
    Require Demo Data
    Go To Page    \#/hydrology
    Wait Until Page Contains Element    css:#h-list button.station
    Click Button    css:#h-list button.station
    Wait Until Page Contains Element    css:#h-chart canvas
    Wait For Condition    return Number(document.getElementById('h-chart').dataset.points || 0) > 0
    Element Attribute Value Should Be    css:#h-chart canvas    role    img
    Browser Should Have No Errors

Basemap Draws Land From The Platform
    [Tags]    smoke    map
    Go To Page    \#/collections
    Wait For Condition    return Boolean(window.eolake.basemap && window.eolake.basemap.land)
    ${failed}=    Execute Javascript    return window.eolake.basemap.failed
    Should Be Equal As Integers    ${failed}    0
    Browser Should Have No Errors

A Station Opens On Its River
    [Tags]    demo    timeseries    map
    Require Demo Data
    Go To Page    \#/hydrology/GARONNE_KM0328
    Wait For Condition    return Number(document.getElementById('h-chart').dataset.points || 0) > 0
    ${zoom}=    Execute Javascript    return window.eolake.map.map.getZoom()
    Should Be True    8 <= ${zoom} <= 12    the map shows the station at zoom ${zoom}
    Wait For Condition    return Number(document.getElementById('map').dataset.previewTiles || 0) > 0
    Wait Until Page Contains Element    css:#h-along a[href="\#/hydrology/GARONNE_KM0336"]
    Click Link    css:#h-along a[href="\#/hydrology/GARONNE_KM0336"]
    Wait Until Element Contains    id:h-title    GARONNE_KM0336
    Browser Should Have No Errors

Reads Well At Phone Width On Every Page
    [Tags]    responsive
    Go To Page    \#/collections
    ${sections}=    Execute Javascript
    ...    return [...document.querySelectorAll('nav a[data-nav]')].map(a => a.getAttribute('href'))
    Set Phone Size
    TRY
        FOR    ${route}    IN    @{sections}    @{PAGES}
            Go To Page    ${route}
            Wait For Condition    return document.querySelector('main h1') !== null
            Element Should Be Visible    css:header nav a[href="\#/hydrology"]
            Page Should Not Scroll Sideways
            Nothing Should Stick Out
        END
        ${expected}=    Evaluate    $EXPECT_DEMO_DATA.strip().lower() in ('true', '1', 'yes')
        IF    ${expected}
            FOR    ${route}    IN    @{DEMO_PAGES}
                Go To Page    ${route}
                Wait For Condition    return document.querySelector('main h1') !== null
                Page Should Not Scroll Sideways
                Nothing Should Stick Out
            END
        END
        Go To Page    \#/collections
        Click Button    id:map-toggle
        Element Should Not Be Visible    id:map
        Click Button    id:map-toggle
        Element Should Be Visible    id:map
        Browser Should Have No Errors
    FINALLY
        Set Laptop Size
    END

Keyboard Reaches The Skip Link First
    [Tags]    a11y
    Go To    ${BASE}/
    Page Should Be Ready
    Press Keys    None    TAB
    ${focused}=    Execute Javascript    return document.activeElement.className
    Should Be Equal    ${focused}    skip

Unknown Paths Are Problems Not Pages
    [Tags]    errors
    ${resp}=    GET On Session    web    /no-such-page    expected_status=any
    Response Should Be Problem    ${resp}    404
