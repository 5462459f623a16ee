// Calls to the Licol JSON API (/api/v1). Adds the CSRF token to requests
// that change data, turns error responses into ApiError, and reports a
// 401 to the application so that it can return to the login page.

const BASE = '/api/v1';
let csrfToken = null;
let onUnauthenticated = null;

export function setCsrfToken(token) {
  csrfToken = token || null;
}

// Registers the function called when a request returns 401 (session
// expired or logged out elsewhere).
export function setUnauthenticatedHandler(handler) {
  onUnauthenticated = handler;
}

// An error returned by the API: status, stable code, French message and,
// for 422, the French message of each invalid field.
export class ApiError extends Error {
  constructor(status, code, message, fields, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.fields = fields || {};
    this.details = details || {}; // the whole "error" object, for extra members
  }
}

const DEFAULT_MESSAGES = {
  400: 'La demande est invalide.',
  401: 'Votre session a expiré. Reconnectez-vous.',
  403: "Vous n'avez pas le droit de faire cette action.",
  404: 'Élément introuvable : il a peut-être été supprimé.',
  409: "L'action est impossible dans l'état actuel des données.",
  413: 'Le fichier est trop volumineux.',
  422: 'Certaines valeurs sont invalides : corrigez les champs signalés.',
  429: 'Trop de tentatives. Patientez quelques minutes puis réessayez.',
};

function defaultMessage(status) {
  return DEFAULT_MESSAGES[status] || `Le serveur a renvoyé une erreur (code ${status}). Réessayez plus tard.`;
}

// Sends a request and returns the decoded JSON body (null for 204).
// body: a plain object (sent as JSON), or a Blob/File (sent as is).
// options.quiet401: do not call the unauthenticated handler (used when
// checking whether a session exists).
export async function api(method, path, body, options = {}) {
  const headers = { Accept: 'application/json' };
  let payload;
  if (body instanceof Blob) {
    headers['Content-Type'] = 'application/octet-stream';
    payload = body;
  } else if (body !== undefined && body !== null) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  if (method !== 'GET' && method !== 'HEAD' && csrfToken) headers['X-CSRF-Token'] = csrfToken;

  let response;
  try {
    response = await fetch(BASE + path, { method, headers, body: payload, credentials: 'same-origin' });
  } catch (err) {
    throw new ApiError(0, 'network', 'Le serveur ne répond pas. Vérifiez votre connexion puis réessayez.');
  }

  let data = null;
  const type = response.headers.get('Content-Type') || '';
  if (response.status !== 204 && type.startsWith('application/json')) {
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
  }
  if (response.ok) return data;

  const error = (data && data.error) || {};
  if (response.status === 401 && !options.quiet401 && onUnauthenticated) onUnauthenticated();
  throw new ApiError(response.status, error.code || `http_${response.status}`,
    error.message || defaultMessage(response.status), error.fields, error);
}

// Builds a query string from an object, leaving out empty values.
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

export function apiUrl(path) {
  return BASE + path;
}
