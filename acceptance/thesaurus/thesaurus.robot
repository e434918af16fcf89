*** Settings ***
Documentation       Thesaurus: the Skosmos-compatible REST subset, autocomplete and query expansion. GEMET and
...                 INSPIRE checks need the demo vocabularies (EXPECT_DEMO_DATA); the others hold for any content.
Resource            ../resources/common.resource
Suite Setup         Start Service Suite    ${THESAURUS_PREFIX}
Test Tags           thesaurus    readonly


*** Variables ***
${FLOODING}         http://www.eionet.europa.eu/gemet/concept/3301
${FLOOD}            http://www.eionet.europa.eu/gemet/concept/3298


*** Test Cases ***
Vocabularies Are Listed With Their Attribution
    [Tags]    smoke
    ${resp}=    GET JSON    /rest/v1/vocabularies
    Response Should Be JSON    ${resp}
    FOR    ${vocab}    IN    @{resp.json()}[vocabularies]
        Should Not Be Empty    ${vocab}[id]
        Should Not Be Empty    ${vocab}[title]
    END

Demo Vocabularies Are GEMET Bilingual And INSPIRE
    [Tags]    demo
    Require Demo Data
    ${resp}=    GET JSON    /rest/v1/vocabularies
    ${vocabs}=    Evaluate    {v['id']: v for v in $resp.json()['vocabularies']}
    Should Be Equal    ${vocabs}[gemet][languages]    ${{['en', 'fr']}}
    Should Contain    ${vocabs}[gemet][attribution]    European Environment Agency
    Should Contain    ${vocabs}[inspire][attribution]    European Commission

French Label Finds The English Concept
    [Tags]    demo
    Require Demo Data
    ${resp}=    GET JSON    /rest/v1/gemet/lookup    params=label=inondation&lang=fr
    Should Be Equal    ${resp.json()}[result][0][uri]    ${FLOODING}
    ${label}=    GET JSON    /rest/v1/gemet/label    params=uri=${FLOODING}&lang=en
    Should Be Equal    ${label.json()}[prefLabel]    flooding

Wildcard Search And Autocomplete
    [Tags]    demo
    Require Demo Data
    ${resp}=    GET JSON    /rest/v1/search    params=query=flood*&lang=en
    ${uris}=    Evaluate    [r['uri'] for r in $resp.json()['results']]
    List Should Contain Value    ${uris}    ${FLOOD}
    ${auto}=    GET JSON    /autocomplete    params=q=inond&lang=fr&limit=5
    ${labels}=    Evaluate    [s['label'] for s in $auto.json()['suggestions']]
    List Should Contain Value    ${labels}    inondation

Narrower Concepts Direct And Transitive
    [Tags]    demo
    Require Demo Data
    ${direct}=    GET JSON    /rest/v1/gemet/narrower    params=uri=${FLOOD}
    Should Not Be Empty    ${direct.json()}[narrower]
    ${all}=    GET JSON    /rest/v1/gemet/narrowerTransitive    params=uri=http://www.eionet.europa.eu/gemet/concept/4116
    Dictionary Should Contain Key    ${all.json()}[narrowerTransitive]    ${FLOOD}

Expansion Says Which Terms Were Used
    [Tags]    demo
    Require Demo Data
    ${resp}=    GET JSON    /expand    params=q=inondation
    List Should Contain Value    ${resp.json()}[terms]    flooding
    List Should Contain Value    ${resp.json()}[terms]    coastal flooding

Batch Expansion Answers Each Text Exactly
    [Tags]    demo
    Require Demo Data
    ${resp}=    GET JSON    /expand/batch    params=q=inondation&q=snow%20flood&depth=0&languages=en,fr
    Length Should Be    ${resp.json()}[results]    2
    List Should Contain Value    ${resp.json()}[results][0][terms]    flooding
    Should Be Empty    ${resp.json()}[results][1][concepts]

Related Concepts Only When Asked
    [Tags]    demo
    Require Demo Data
    ${plain}=    GET JSON    /expand    params=q=drought&languages=en,fr
    List Should Not Contain Value    ${plain.json()}[terms]    soil moisture
    ${resp}=    GET JSON    /expand    params=q=drought&related=true&languages=en,fr
    List Should Contain Value    ${resp.json()}[terms]    soil moisture
    ${relations}=    Evaluate    sorted({c['relation'] for c in $resp.json()['concepts']})
    List Should Contain Value    ${relations}    related

Unknown Concept And Vocabulary Are 404 Problems
    [Tags]    errors
    ${resp}=    GET JSON    /rest/v1/no-such-vocabulary/topConcepts    expected_status=404
    Response Should Be Problem    ${resp}    404
    ${vocabs}=    GET JSON    /rest/v1/vocabularies
    Skip If    not $vocabs.json()['vocabularies']    no vocabulary loaded
    ${id}=    Set Variable    ${vocabs.json()}[vocabularies][0][id]
    ${resp}=    GET JSON    /rest/v1/${id}/data    params=uri=http://example.org/no-such-concept    expected_status=404
    Response Should Be Problem    ${resp}    404

Bad Parameters Are 400 Problems
    [Tags]    errors
    ${resp}=    GET JSON    /rest/v1/search    params=query=a*&maxhits=1000000    expected_status=400
    Response Should Be Problem    ${resp}    400
    ${resp}=    GET JSON    /expand    params=q=flood&depth=99    expected_status=400
    Response Should Be Problem    ${resp}    400
    ${resp}=    GET JSON    /expand/batch    expected_status=400
    Response Should Be Problem    ${resp}    400
