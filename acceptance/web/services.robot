*** Settings ***
Documentation       The catalog of services (``/services.json`` and its page, with live readiness) and every service's
...                 API documentation page, which must render from the platform's own origin (offline).
Resource            ../resources/web.resource
Suite Setup         Start Web Suite
Suite Teardown      Close All Browsers
Test Tags           web    services    readonly


*** Test Cases ***
Services Catalog Is A Record Per Service
    [Tags]    smoke    api
    ${resp}=    GET On Session    web    /services.json
    Should Start With    ${resp.headers}[content-type]    application/geo+json
    ${ids}=    Evaluate    [r['id'] for r in $resp.json()['features']]
    List Should Contain Value    ${ids}    catalog
    List Should Contain Value    ${ids}    web
    FOR    ${record}    IN    @{resp.json()}[features]
        Should Not Be Empty    ${record}[properties][title]
        ${rels}=    Evaluate    [l['rel'] for l in $record['links']]
        List Should Contain Value    ${rels}    status
    END

Services Catalog Is Searchable
    [Tags]    api
    ${resp}=    GET On Session    web    /services.json    params=q=tiles
    ${ids}=    Evaluate    [r['id'] for r in $resp.json()['features']]
    Should Be Equal    ${ids}    ${{['tiles']}}

Services Page Shows Every Service Ready
    [Tags]    smoke
    ${resp}=    GET On Session    web    /services.json
    ${count}=    Get Length    ${resp.json()}[features]
    Go To Page    \#/services
    Wait For Condition    return document.querySelectorAll('#services li').length === ${count}
    Wait For Condition    return !document.querySelector('#services li[data-state="checking"]')
    ${states}=    Execute Javascript
    ...    return [...document.querySelectorAll('#services li')].map(li => li.dataset.state)
    FOR    ${state}    IN    @{states}
        Should Be Equal    ${state}    ready
    END
    Browser Should Have No Errors

Every API Documentation Page Renders Offline
    [Documentation]    Swagger UI from the platform's origin; the one request elsewhere may be the platform's
    ...    identity provider's discovery document, which the descriptions name for signing in.
    [Tags]    docs
    ${config}=    GET On Session    web    /config.json
    ${issuer}=    Evaluate    ($config.json().get('oidc') or {}).get('issuer', '')
    ${resp}=    GET On Session    web    /services.json
    FOR    ${record}    IN    @{resp.json()}[features]
        ${status}=    Evaluate    next(l['href'] for l in $record['links'] if l['rel'] == 'status')
        ${ready}=    GET On Session    web    ${status}
        ${docs}=    Evaluate    [l['href'] for l in $ready.json().get('links', []) if l['rel'] == 'service-doc']
        FOR    ${href}    IN    @{docs}
            Go To    ${BASE}${href}
            Wait For Condition    return document.querySelectorAll('.swagger-ui .opblock').length > 0
            ${foreign}=    Execute Javascript
            ...    return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(location.origin + '/')
            ...    && !(arguments[0] && n === arguments[0] + '/.well-known/openid-configuration'))    ARGUMENTS    ${issuer}
            Should Be Empty    ${foreign}    ${href} loaded from another origin: ${foreign}
        END
    END
    Browser Should Have No Errors
