*** Settings ***
Documentation       The tile service: tiles of a demo item and of the demo collection mosaic, TileJSON, WMTS,
...                 cache headers, and the errors a map client may provoke (all RFC 9457 problems).
Resource            ../resources/common.resource
Suite Setup         Start Service Suite    ${TILES_PREFIX}
Test Tags           tiles    readonly


*** Variables ***
${COLLECTION}       garonne-wse
${ITEM}             garonne-wse-2023-01-01
${STYLE}            assets=wse&rescale=125,150&colormap_name=viridis
# A zoom-12 tile over Toulouse, inside the demo rasters.
${TILE}             WebMercatorQuad/12/2063/1495


*** Test Cases ***
Readyz Reports Ready
    [Tags]    smoke    operations
    ${resp}=    GET JSON    /readyz
    Should Be Equal    ${resp.json()}[status]    ready

Item Tile Is A 256 Pixel PNG With Cache Headers
    [Tags]    smoke    demo
    Require Demo Data
    ${resp}=    GET JSON    /collections/${COLLECTION}/items/${ITEM}/tiles/${TILE}.png?${STYLE}
    Should Be Equal    ${resp.headers}[content-type]    image/png
    PNG Should Be    ${resp.content}    256    256
    Should Start With    ${resp.headers}[cache-control]    public, max-age=
    Should Not Be Empty    ${resp.headers}[etag]

Repeated Tile With Its ETag Is A 304
    [Tags]    demo    cache
    Require Demo Data
    ${resp}=    GET JSON    /collections/${COLLECTION}/items/${ITEM}/tiles/${TILE}.png?${STYLE}
    ${headers}=    Create Dictionary    If-None-Match=${resp.headers}[etag]
    ${again}=    GET JSON    /collections/${COLLECTION}/items/${ITEM}/tiles/${TILE}.png?${STYLE}
    ...    headers=${headers}    expected_status=304
    Should Be Equal    ${again.headers}[etag]    ${resp.headers}[etag]

Collection Mosaic Tile And TileJSON
    [Tags]    demo    mosaic
    Require Demo Data
    ${resp}=    GET JSON    /collections/${COLLECTION}/tiles/${TILE}.png?${STYLE}
    PNG Should Be    ${resp.content}    256    256
    ${tj}=    GET JSON    /collections/${COLLECTION}/WebMercatorQuad/tilejson.json?${STYLE}
    ${bounds}=    Evaluate    [round(v, 6) for v in $tj.json()['bounds']]
    Lists Should Be Equal    ${bounds}    ${{ [1.3, 43.5, 1.5, 43.7] }}
    Should Start With    ${tj.json()}[tiles][0]    ${SERVICE_URL}/collections/${COLLECTION}/tiles/

WMTS Capabilities Use The Public URL
    [Tags]    demo
    Require Demo Data
    ${resp}=    GET JSON    /collections/${COLLECTION}/items/${ITEM}/WMTSCapabilities.xml?${STYLE}
    Should Contain    ${resp.text}    <Capabilities
    Should Contain    ${resp.text}    ${SERVICE_URL}/collections/${COLLECTION}/items/${ITEM}/

Out Of Range Tiles And Unknown Items Are 404 Problems
    [Tags]    errors
    FOR    ${tile}    IN    WebMercatorQuad/31/0/0    WebMercatorQuad/3/8/0    WebMercatorQuad/3/0/-1
        ${resp}=    GET JSON    /collections/${COLLECTION}/items/${ITEM}/tiles/${tile}.png?${STYLE}
        ...    expected_status=404
        Response Should Be Problem    ${resp}    404
    END
    ${resp}=    GET JSON    /collections/${COLLECTION}/items/no-such-item/tiles/${TILE}.png?${STYLE}
    ...    expected_status=404
    Response Should Be Problem    ${resp}    404

Bad Colormap, Expression And Sizes Are 400 Problems
    [Tags]    errors
    ${base}=    Set Variable    /collections/${COLLECTION}/items/${ITEM}
    FOR    ${query}    IN    assets=wse&colormap_name=no-such-map    assets=wse&colormap={bad
    ...    expression=__import__('os')    ${STYLE}&tilesize=100000    url=/etc/passwd
        ${resp}=    GET JSON    ${base}/tiles/${TILE}.png?${query}    expected_status=400
        Response Should Be Problem    ${resp}    400
    END
    ${resp}=    GET JSON    ${base}/preview/100000x100000.png?assets=wse    expected_status=400
    Response Should Be Problem    ${resp}    400

Zoom 0 Mosaic Answers Within Its Budget
    [Tags]    demo    mosaic
    Require Demo Data
    ${resp}=    GET JSON    /collections/${COLLECTION}/tiles/WebMercatorQuad/0/0/0.png?${STYLE}
    ...    expected_status=any
    Should Be True    ${resp.status_code} in (200, 204, 504)    ${resp.status_code}: ${resp.text[:300]}


*** Keywords ***
PNG Should Be
    [Documentation]    The bytes are a PNG of the given size (read from its IHDR chunk).
    [Arguments]    ${content}    ${width}    ${height}
    ${signature}=    Evaluate    $content[:8] == b'\\x89PNG\\r\\n\\x1a\\n'
    Should Be True    ${signature}    not a PNG
    ${size}=    Evaluate    list(__import__('struct').unpack('>II', $content[16:24]))
    Lists Should Be Equal    ${size}    ${{ [int($width), int($height)] }}
