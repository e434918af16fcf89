*** Settings ***
Documentation       Catalog landing page and conformance: what a STAC client reads first.
Resource            ../resources/common.resource
Suite Setup         Start Service Suite    ${CATALOG_PREFIX}
Test Tags           catalog    readonly


*** Variables ***
@{REQUIRED_CONFORMANCE}
...                 https://api.stacspec.org/v1.0.0/core
...                 https://api.stacspec.org/v1.0.0/collections
...                 https://api.stacspec.org/v1.0.0/item-search
...                 https://api.stacspec.org/v1.0.0/ogcapi-features
...                 http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core
...                 http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson
...                 http://www.opengis.net/spec/cql2/1.0/conf/cql2-text
...                 http://www.opengis.net/spec/cql2/1.0/conf/cql2-json
...                 http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter
...                 https://api.stacspec.org/v1.1.0/item-search#sort


*** Test Cases ***
Landing Page Is A STAC Catalog
    [Tags]    smoke
    ${resp}=    GET JSON    /
    Response Should Be JSON    ${resp}
    ${landing}=    Set Variable    ${resp.json()}
    Should Be Equal    ${landing}[type]    Catalog
    Should Not Be Empty    ${landing}[id]
    Should Not Be Empty    ${landing}[stac_version]
    Should Not Be Empty    ${landing}[conformsTo]

Landing Page Links Are Under The Base URL
    [Tags]    smoke    links
    ${resp}=    GET JSON    /
    ${links}=    Set Variable    ${resp.json()}[links]
    API Links Should Be Under Base URL    ${links}
    FOR    ${rel}    IN    self    root    data    conformance    search
        ${href}=    Link Href    ${links}    ${rel}
        Should Start With    ${href}    ${SERVICE_URL}/
    END
    ${self}=    Link Href    ${links}    self
    Should Be Equal    ${self.rstrip('/')}    ${SERVICE_URL}

Landing Page Declares The Expected Conformance Classes
    ${resp}=    GET JSON    /
    FOR    ${class}    IN    @{REQUIRED_CONFORMANCE}
        List Should Contain Value    ${resp.json()}[conformsTo]    ${class}
    END

Conformance Endpoint Matches The Landing Page
    [Tags]    smoke
    ${landing}=    GET JSON    /
    ${resp}=    GET JSON    /conformance
    Response Should Be JSON    ${resp}
    ${classes}=    Set Variable    ${resp.json()}[conformsTo]
    FOR    ${class}    IN    @{REQUIRED_CONFORMANCE}
        List Should Contain Value    ${classes}    ${class}
    END
    Lists Should Be Equal    ${classes}    ${landing.json()}[conformsTo]    ignore_order=True

Search Links Advertise GET And POST
    ${resp}=    GET JSON    /
    ${methods}=    Evaluate    sorted(l.get('method', 'GET') for l in $resp.json()['links'] if l['rel'] == 'search')
    Lists Should Be Equal    ${methods}    ${{ ['GET', 'POST'] }}

Queryables Are Published
    ${resp}=    GET JSON    /queryables
    Response Should Be JSON    ${resp}
    Dictionary Should Contain Key    ${resp.json()}    properties
    Dictionary Should Contain Key    ${resp.json()}[properties]    datetime
