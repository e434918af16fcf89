*** Settings ***
Documentation       Transactions with the admin key: create a throw-away collection and item, read them back,
...                 delete them. Skipped without an admin key (variable ADMIN_API_KEY); always cleans up.
Resource            ../resources/common.resource
Suite Setup         Start Transaction Suite
Suite Teardown      Remove Test Collection
Test Tags           catalog    write


*** Test Cases ***
Admin Creates A Collection
    Require Admin Key
    ${resp}=    POST JSON    /collections    ${COLLECTION}    expected_status=201    api_key=${ADMIN_API_KEY}
    Should Be Equal    ${resp.json()}[id]    ${COLLECTION_ID}
    ${resp}=    GET JSON    /collections/${COLLECTION_ID}
    Should Be Equal    ${resp.json()}[description]    ${COLLECTION}[description]
    API Links Should Be Under Base URL    ${resp.json()}[links]

Admin Adds An Item That Search Finds
    Require Admin Key
    ${resp}=    POST JSON    /collections/${COLLECTION_ID}/items    ${ITEM}    expected_status=201
    ...    api_key=${ADMIN_API_KEY}
    ${resp}=    GET JSON    /collections/${COLLECTION_ID}/items/${ITEM}[id]
    Should Be Equal    ${resp.json()}[properties][datetime]    ${ITEM}[properties][datetime]
    ${body}=    Create Dictionary    collections=${{ [$COLLECTION_ID] }}    bbox=${{ [0, 0, 1, 1] }}
    ${resp}=    POST JSON    /search    ${body}
    ${ids}=    Feature Ids    ${resp.json()}
    Lists Should Be Equal    ${ids}    ${{ [$ITEM['id']] }}

Admin Deletes The Item And The Collection
    Require Admin Key
    DELETE Resource    /collections/${COLLECTION_ID}/items/${ITEM}[id]    api_key=${ADMIN_API_KEY}
    GET JSON    /collections/${COLLECTION_ID}/items/${ITEM}[id]    expected_status=404
    DELETE Resource    /collections/${COLLECTION_ID}    api_key=${ADMIN_API_KEY}
    ${resp}=    GET JSON    /collections/${COLLECTION_ID}    expected_status=404
    Response Should Be Problem    ${resp}    404


*** Keywords ***
Start Transaction Suite
    Start Service Suite    ${CATALOG_PREFIX}
    ${suffix}=    Generate Random String    10    [LOWER][NUMBERS]
    Set Suite Variable    ${COLLECTION_ID}    acceptance-${suffix}
    ${collection}=    Catenate    {
    ...    "type": "Collection", "stac_version": "1.0.0", "id": $COLLECTION_ID, "license": "proprietary",
    ...    "description": "Created and deleted by the acceptance suite",
    ...    "extent": {"spatial": {"bbox": [[0, 0, 1, 1]]},
    ...    "temporal": {"interval": [["2020-01-01T00:00:00Z", None]]}}, "links": []}
    ${collection}=    Evaluate    ${collection}
    Set Suite Variable    ${COLLECTION}    ${collection}
    ${item}=    Catenate    {
    ...    "type": "Feature", "stac_version": "1.0.0", "id": "item-1", "collection": $COLLECTION_ID,
    ...    "geometry": {"type": "Point", "coordinates": [0.5, 0.5]}, "bbox": [0.5, 0.5, 0.5, 0.5],
    ...    "properties": {"datetime": "2020-06-01T00:00:00Z"}, "links": [], "assets": {}}
    ${item}=    Evaluate    ${item}
    Set Suite Variable    ${ITEM}    ${item}

Remove Test Collection
    IF    not $ADMIN_API_KEY    RETURN
    DELETE Resource    /collections/${COLLECTION_ID}    expected_status=any    api_key=${ADMIN_API_KEY}
