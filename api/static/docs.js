// Starts Swagger UI on the service's own OpenAPI document; every asset comes from this service.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/docs/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // A pasted token is not kept in localStorage, where any script of this origin could read it.
    persistAuthorization: false,
    tryItOutEnabled: false,
    // No validator badge: it would send the document to a validator on the internet.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
