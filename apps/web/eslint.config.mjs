// ESLint for the web view's own scripts (static/js: ES modules, and api-docs.js, a classic script). The vendored
// libraries are loaded by <script> tags and reach the modules as globals of the page.
import js from '@eslint/js';
import globals from 'globals';

const vendor = {
  maplibregl: 'readonly', uPlot: 'readonly', SwaggerUIBundle: 'readonly', DOMPurify: 'readonly', marked: 'readonly',
  topojson: 'readonly',
};

export default [
  { ignores: ['src/eolake_web/static/vendor/**', 'node_modules/**'] },
  js.configs.recommended,
  {
    files: ['src/eolake_web/static/js/**/*.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: { ...globals.browser, ...vendor } },
    rules: {
      'no-unused-vars': ['error', { args: 'after-used', argsIgnorePattern: '^_', caughtErrors: 'none' }],
      eqeqeq: ['error', 'smart'],
      'no-var': 'error',
      'prefer-const': 'error',
    },
  },
  {
    files: ['src/eolake_web/static/js/api-docs.js'],
    languageOptions: { sourceType: 'script' },
  },
];
