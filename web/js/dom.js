// DOM construction and display helpers shared by every page. Pages build
// their markup with h() so that data from the server is always inserted
// as text, never parsed as HTML.

// Creates an element. props: attributes, with "class", "text" (text
// content), "on<event>" (listener) and boolean attributes (true adds the
// attribute, false or null leaves it out). children: nodes, strings,
// numbers or nested arrays; null, undefined, false and '' are skipped.
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'text') {
      el.textContent = value;
    } else if (key === 'value' && 'value' in el) {
      el.value = value;
    } else if (key === 'checked' || key === 'selected' || key === 'disabled') {
      // The attribute too, so that form.reset() comes back to this state.
      el[key] = true;
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

// Appends children (same forms as h()) to el and returns el. Empty
// strings add no text node, so that CSS :empty matches empty cells.
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false || child === '') continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Replaces the content of el with children.
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let uniqueCounter = 0;

// Returns an id unique in the document, for label/aria links.
export function uniqueId(prefix) {
  uniqueCounter += 1;
  return `${prefix}-${uniqueCounter}`;
}

// Announces message to screen readers through the polite live region of
// index.html.
export function announce(message) {
  const region = document.getElementById('annonce');
  if (!region) return;
  region.textContent = '';
  // A new text node after a tick makes screen readers read repeated messages.
  setTimeout(() => { region.textContent = message; }, 50);
}

const dateFormat = new Intl.DateTimeFormat('fr-FR', { day: '2-digit', month: '2-digit', year: 'numeric', timeZone: 'UTC' });
const dateTimeFormat = new Intl.DateTimeFormat('fr-FR', {
  day: '2-digit', month: '2-digit', year: 'numeric', hour: '2-digit', minute: '2-digit',
});

// Formats an ISO date (yyyy-mm-dd) as dd/mm/yyyy; returns '' for an
// empty value and the raw text for a value that is not a date.
export function formatDate(iso) {
  if (!iso) return '';
  const match = /^(\d{4})-(\d{2})-(\d{2})/.exec(iso);
  if (!match || match[1] === '0000') return iso;
  const date = new Date(Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3])));
  return Number.isNaN(date.getTime()) ? iso : dateFormat.format(date);
}

// Formats a UTC timestamp (yyyy-mm-ddThh:mm:ssZ) in the browser's time zone.
export function formatDateTime(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : dateTimeFormat.format(date);
}

// Formats a French number stored as E.164 (+33612345678) the way French
// people write it (06 12 34 56 78); other numbers are returned unchanged.
export function formatPhone(phone) {
  if (!phone) return '';
  const match = /^\+33(\d{9})$/.exec(phone);
  if (!match) return phone;
  return `0${match[1]}`.replace(/(\d{2})(?=\d)/g, '$1 ');
}

// Formats a byte count in French units (Ko, Mo).
export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return '';
  if (bytes < 1024) return `${bytes} octets`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toLocaleString('fr-FR', { maximumFractionDigits: 1 })} Ko`;
  return `${(bytes / 1024 / 1024).toLocaleString('fr-FR', { maximumFractionDigits: 1 })} Mo`;
}

// Returns "1 cavalier" / "3 cavaliers" (plural by appending s unless given).
export function plural(count, singular, pluralForm) {
  const word = count === 1 || count === 0 ? singular : (pluralForm || `${singular}s`);
  return `${count.toLocaleString('fr-FR')} ${word}`;
}

// Status (role) codes and their French labels, in display order.
export const ROLES = [
  ['gerant', 'Gérant'],
  ['employe', 'Employé'],
  ['client', 'Client'],
  ['visiteur', 'Visiteur'],
  ['comptable', 'Comptable'],
  ['proprietaire', 'Propriétaire'],
];

export function roleLabel(code) {
  const found = ROLES.find(([key]) => key === code);
  return found ? found[1] : code;
}

// Full display name "Prénom NOM" of a person object.
export function personName(person) {
  if (!person) return '';
  if (person.name) return person.name;
  const first = person.first_name && person.first_name !== '.' ? person.first_name : '';
  return [first, (person.last_name || '').toUpperCase()].filter(Boolean).join(' ') || `Personne n° ${person.id}`;
}
