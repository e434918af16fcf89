*** Settings ***
Documentation       Lists that come a page at a time: the total is the service's own (never a guess), paging buttons
...                 show only when there is such a page, and collections without items are marked as empty.
Resource            ../resources/web.resource
Suite Setup         Start Web Suite
Suite Teardown      Close All Browsers
Test Tags           web    readonly    counts


*** Test Cases ***
Collections Show The Catalog's Total And Mark Empty Ones
    [Tags]    counts
    ${resp}=    GET On Session    web    ${CATALOG_PREFIX}/collections    params=limit=100
    ${collections}=    Set Variable    ${resp.json()}[collections]
    ${total}=    Get Length    ${collections}
    Go To Page    \#/collections
    Wait For Condition    return document.querySelectorAll('#coll-list .count.done').length === ${total}
    ${matched}=    Evaluate    $resp.json().get('numberMatched')
    IF    $matched is not None
        Element Text Should Be    id:coll-status    ${matched} collection${{'' if $matched == 1 else 's'}}.
    END
    FOR    ${collection}    IN    @{collections}
        ${items}=    GET On Session    web    ${CATALOG_PREFIX}/collections/${collection}[id]/items    params=limit=1
        ${empty}=    Evaluate    not $items.json()['features']
        ${marked}=    Execute Javascript
        ...    return document.querySelector(`#coll-list .count[data-collection="${collection}[id]"]`).closest('li').classList.contains('empty')
        Should Be Equal    ${marked}    ${empty}    ${collection}[id]: marked empty ${marked}, has no items ${empty}
    END
    Browser Should Have No Errors

Paging Buttons Show Only When There Is A Page
    [Documentation]    The dataset search of the federated service, a page of 50: Next only when the answer has a
    ...    next link, Previous only past the first page, and the total only when the service gives it.
    [Tags]    counts    search
    ${resp}=    GET On Session    web    ${SEARCH_PREFIX}/collections    params=q=sentinel&limit=50
    ${next}=    Evaluate    any(l['rel'] == 'next' for l in $resp.json()['links'])
    Go To Page    \#/collections?q=sentinel
    Wait For Condition    return /^(Collections|No|\\d)/.test(document.getElementById('coll-status').textContent)
    IF    ${next}
        Element Should Be Visible    id:coll-pager-next
        Element Should Not Be Visible    id:coll-pager-prev
        Element Should Contain    id:coll-status    Collections 1–50 of
        Click Button    id:coll-pager-next
        Wait Until Element Contains    id:coll-status    Collections 51–
        Element Should Be Visible    id:coll-pager-prev
    ELSE
        Element Should Not Be Visible    id:coll-pager
    END
    Browser Should Have No Errors

Search Pages Through A Collection With Next Links
    [Tags]    demo    search
    Require Demo Data
    Go To Page    \#/search?collections=garonne-wse
    Wait For Condition    return document.querySelectorAll('#s-results li').length === 20
    Element Should Be Enabled    id:s-next
    Click Button    id:s-next
    Wait For Condition    return document.querySelectorAll('#s-results li').length === 4
    Element Should Contain    id:s-status    Results 21–24
    Click Button    id:s-prev
    Wait For Condition    return document.querySelectorAll('#s-results li').length === 20
