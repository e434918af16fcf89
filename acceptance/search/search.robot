*** Settings ***
Documentation       Federated search: a STAC API over the local catalog and the configured providers, with the
...                 status of each provider, merged and deduplicated results, paging and thesaurus expansion.
Resource            ../resources/common.resource
Suite Setup         Start Service Suite    ${SEARCH_PREFIX}
Test Tags           search    readonly


*** Test Cases ***
Landing Page And Conformance
    [Tags]    smoke
    ${resp}=    GET JSON    /
    Response Should Be JSON    ${resp}
    API Links Should Be Under Base URL    ${resp.json()}[links]
    ${conf}=    GET JSON    /conformance
    List Should Contain Value    ${conf.json()}[conformsTo]    https://api.stacspec.org/v1.0.0/item-search

Search Reports Every Provider
    [Tags]    smoke
    ${resp}=    GET JSON    /search    params=limit=5
    ${body}=    Set Variable    ${resp.json()}
    Should Be Equal    ${body}[type]    FeatureCollection
    Should Not Be Empty    ${body}[federation]
    FOR    ${name}    ${status}    IN    &{body}[federation]
        Should Contain Any    ${status}[status]    ok    timeout    error    skipped
    END
    FOR    ${feature}    IN    @{body}[features]
        Should Not Be Empty    ${feature}[properties][federation:backends]
    END

Pages Never Repeat An Item
    [Tags]    demo
    Require Demo Data
    ${resp}=    GET JSON    /search    params=collections=garonne-wse&limit=10
    ${ids}=    Feature Ids    ${resp.json()}
    ${next}=    Link Href    ${resp.json()}[links]    next
    ${path}=    Evaluate    $next[len($SERVICE_URL):]
    ${page2}=    GET JSON    ${path}
    ${more}=    Feature Ids    ${page2.json()}
    ${both}=    Combine Lists    ${ids}    ${more}
    ${unique}=    Remove Duplicates    ${both}
    Length Should Be    ${unique}    20

Both Local Providers Serve The Hydrology Items
    [Tags]    demo
    Require Demo Data
    ${resp}=    GET JSON    /search    params=collections=garonne-virtual-stations&limit=10
    Length Should Be    ${resp.json()}[features]    6
    ${backends}=    Set Variable    ${resp.json()}[features][0][properties][federation:backends]
    Length Should Be    ${backends}    2

Provider Filter
    ${resp}=    GET JSON    /search    params=providers=local&limit=1
    ${names}=    Get Dictionary Keys    ${resp.json()}[federation]
    Should Be Equal    ${names}    ${{['local']}}

French Query Is Expanded Through The Thesaurus
    [Tags]    demo
    Require Demo Data
    ${resp}=    GET JSON    /search    params=q=gare&lang=fr&limit=50
    List Should Contain Value    ${resp.json()}[expansion][terms]    station
    Length Should Be    ${resp.json()}[features]    6
    ${off}=    GET JSON    /search    params=q=gare&lang=fr&expand=false
    Should Be Empty    ${off.json()}[features]

Collections Are Merged
    ${resp}=    GET JSON    /collections
    FOR    ${collection}    IN    @{resp.json()}[collections]
        Should Not Be Empty    ${collection}[federation:backends]
    END

A Limit Above The Maximum Is Capped
    [Tags]    limits
    ${resp}=    GET JSON    /search    params=limit=100000
    Should Be Equal As Integers    ${resp.json()}[context][limit]    100

Hostile Filters Are Refused Before Parsing
    [Tags]    errors    limits
    ${deep}=    Evaluate    "NOT (" * 3000 + "id = 'x'" + ")" * 3000
    ${body}=    Create Dictionary    filter=${deep}    filter-lang=cql2-text
    ${resp}=    POST JSON    /search    ${body}    expected_status=400
    ${problem}=    Response Should Be Problem    ${resp}    400
    Should Contain    ${problem}[detail]    nesting exceeds

Bad Input Is A 400 Problem
    [Tags]    errors
    ${resp}=    GET JSON    /search    params=providers=no-such-provider    expected_status=400
    Response Should Be Problem    ${resp}    400
    ${resp}=    GET JSON    /search    params=filter=id = = 'x'    expected_status=400
    Response Should Be Problem    ${resp}    400
    ${resp}=    GET JSON    /search    params=bbox=-200,0,10,10    expected_status=400
    Response Should Be Problem    ${resp}    400
    ${resp}=    GET JSON    /search    params=limit=0    expected_status=400
    Response Should Be Problem    ${resp}    400
