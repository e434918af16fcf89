// Starts Swagger UI on a service's documentation page (eolake_kit.docs): a file, not an inline script, so that the
// page keeps a strict Content-Security-Policy. The OpenAPI URL comes from the page; nothing leaves the origin.
(function start() {
  const root = document.getElementById('swagger-ui');
  if (!root || !window.SwaggerUIBundle) {
    if (root) root.textContent = 'The documentation viewer did not load; the API description is linked below.';
    return;
  }
  root.textContent = '';
  window.ui = window.SwaggerUIBundle({
    url: root.dataset.openapi,
    domNode: root,
    deepLinking: true,
    validatorUrl: null, // the default sends the description to an online validator
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout',
    tryItOutEnabled: false,
  });
}());
