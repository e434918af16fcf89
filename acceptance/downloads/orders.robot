*** Settings ***
Documentation       Download service: orders, staging, resumable checksummed downloads, auth and errors.
...
...                 Runs against ``${BASE_URL}``; tests that order need ``${USER_API_KEY}`` (skipped without it)
...                 and the demo data (``${EXPECT_DEMO_DATA}``).
Resource            ../resources/common.resource
Suite Setup         Start Service Suite    ${DOWNLOADS_PREFIX}


*** Variables ***
${DEMO_COLLECTION}      garonne-wse
${DEMO_ITEM}            garonne-wse-2023-01-01
${ORDER_TIMEOUT}        2 min


*** Test Cases ***
Service Is Ready
    [Tags]    smoke    downloads
    ${resp}=    GET JSON    /readyz
    Response Should Be JSON    ${resp}

Orders Require Authentication
    [Tags]    downloads    auth    errors
    ${resp}=    GET JSON    /orders    expected_status=401
    Response Should Be Problem    ${resp}    401
    ${body}=    Create Dictionary    items=${{[{"collection": "x", "id": "y"}]}}
    ${resp}=    POST JSON    /orders    ${body}    expected_status=401
    Response Should Be Problem    ${resp}    401

Unknown Order Is Not Found
    [Tags]    downloads    errors
    Require User Key
    ${resp}=    Send Request    GET    /orders/00000000-0000-0000-0000-000000000000    ${USER_API_KEY}
    Response Should Be Problem    ${resp}    404
    ${resp}=    Send Request    GET    /orders/not-an-id    ${USER_API_KEY}
    Response Should Be Problem    ${resp}    404

Malformed Order Is Rejected
    [Tags]    downloads    errors
    Require User Key
    ${body}=    Create Dictionary    items=not-a-list
    ${resp}=    POST JSON    /orders    ${body}    expected_status=400    api_key=${USER_API_KEY}
    Response Should Be Problem    ${resp}    400
    ${body}=    Create Dictionary
    ${resp}=    POST JSON    /orders    ${body}    expected_status=400    api_key=${USER_API_KEY}
    Response Should Be Problem    ${resp}    400

Order A Demo File And Download It Verified
    [Tags]    downloads    write    demo
    Require User Key
    Require Demo Data
    ${order}=    Order Demo File
    Should Be Equal    ${order}[status]    succeeded    order ended ${order}[status]: ${order}[reason]
    ${file}=    Set Variable    ${order}[files][0]
    ${resp}=    Send Request    GET    /orders/${order}[id]/files/${file}[id]    ${USER_API_KEY}
    Should Be Equal As Integers    ${resp.status_code}    200
    ${sha}=    Evaluate    hashlib.sha256($resp.content).hexdigest()    modules=hashlib
    Should Be Equal    1220${sha}    ${file}[checksum]
    Should Be Equal    ${resp.headers}[x-checksum-sha256]    ${sha}
    Should Be Equal As Integers    ${resp.headers}[content-length]    ${file}[size]
    Dictionary Should Contain Key    ${resp.headers}    etag
    Dictionary Should Contain Key    ${resp.headers}    last-modified

Range Requests Resume Downloads
    [Tags]    downloads    write    demo
    Require User Key
    Require Demo Data
    ${order}=    Order Demo File
    ${file}=    Set Variable    ${order}[files][0]
    ${path}=    Set Variable    /orders/${order}[id]/files/${file}[id]
    ${whole}=    Send Request    GET    ${path}    ${USER_API_KEY}
    ${resp}=    GET Range    ${path}    bytes=100-
    Should Be Equal As Integers    ${resp.status_code}    206
    Should Be Equal    ${resp.content}    ${whole.content[100:]}
    Should Be Equal    ${resp.headers}[content-range]    bytes 100-${{$file['size'] - 1}}/${file}[size]
    ${resp}=    GET Range    ${path}    bytes=999999999-
    Response Should Be Problem    ${resp}    416

My Orders Are Listed Newest First
    [Tags]    downloads    write    demo
    Require User Key
    Require Demo Data
    ${order}=    Order Demo File
    ${resp}=    Send Request    GET    /orders    ${USER_API_KEY}    params=${{{"limit": "5"}}}
    Should Be Equal As Integers    ${resp.status_code}    200
    ${ids}=    Evaluate    [o['id'] for o in $resp.json()['orders']]
    Should Be Equal    ${ids}[0]    ${order}[id]
    ${resp}=    Send Request    GET    /orders    ${USER_API_KEY}    params=${{{"token": "garbage"}}}
    Response Should Be Problem    ${resp}    400


*** Keywords ***
Order Demo File
    [Documentation]    Orders the demo COG's ``wse`` asset and waits until the order is final; returns it.
    ${item}=    Create Dictionary    collection=${DEMO_COLLECTION}    id=${DEMO_ITEM}    assets=${{["wse"]}}
    ${items}=    Create List    ${item}
    ${body}=    Create Dictionary    items=${items}
    ${resp}=    POST JSON    /orders    ${body}    expected_status=201    api_key=${USER_API_KEY}
    ${id}=    Set Variable    ${resp.json()}[id]
    ${order}=    Wait Until Keyword Succeeds    ${ORDER_TIMEOUT}    1 s    Order Should Be Final    ${id}
    RETURN    ${order}

GET Range
    [Documentation]    GET with a Range header and the user key (logging off while the key is in use).
    [Arguments]    ${path}    ${range}
    ${level}=    Set Log Level    NONE
    TRY
        ${headers}=    Create Dictionary    X-API-Key=${USER_API_KEY}    Range=${range}
        ${resp}=    GET On Session    ${SERVICE}    ${path}    headers=${headers}    expected_status=any
    FINALLY
        Set Log Level    ${level}
    END
    Log    GET ${resp.url} Range ${range} -> ${resp.status_code}
    RETURN    ${resp}

Order Should Be Final
    [Arguments]    ${id}
    ${resp}=    Send Request    GET    /orders/${id}    ${USER_API_KEY}
    Should Be Equal As Integers    ${resp.status_code}    200
    ${order}=    Set Variable    ${resp.json()}
    Should Contain Any    ${order}[status]    succeeded    failed    canceled
    RETURN    ${order}
