// Form controls built from the field catalogue (GET /api/v1/fields): one
// control per core or plugin field, grouped in fieldsets, with the value
// conversions between the API's text values and the controls.

import { api } from './api.js';
import { h, formatDate, formatPhone } from './dom.js';
import { formField } from './ui.js';

// Core fields in their sections; plugin fields go to a section per plugin.
const CORE_GROUPS = [
  ['Identité', ['last_name', 'first_name', 'birth_date', 'sex']],
  ['Coordonnées', ['email', 'phone', 'mobile', 'address', 'address2', 'postcode', 'city', 'country']],
  ['Équitation', ['licence_number', 'galop']],
];

const SEX_LABELS = { F: 'Féminin', M: 'Masculin' };

const INPUT_TYPES = {
  text: 'text', number: 'number', date: 'date', email: 'email', phone: 'tel',
};

let catalogueCache = null;
let galopsCache = null;

// Loads the field catalogue and the Galop scale once per page load.
export async function loadCatalogue() {
  if (!catalogueCache) {
    const body = await api('GET', '/fields');
    catalogueCache = Array.isArray(body) ? body : (body.fields || []);
  }
  if (!galopsCache) {
    try {
      const body = await api('GET', '/galops');
      galopsCache = (Array.isArray(body) ? body : (body.items || body.galops || []))
        .slice().sort((a, b) => (a.rank ?? 0) - (b.rank ?? 0));
    } catch (err) {
      if (err.status === 401) throw err;
      galopsCache = []; // the Galop field falls back to a text box
    }
  }
  return { fields: catalogueCache, galops: galopsCache };
}

// French label of a field key, for history rows and import reports. Needs
// loadCatalogue() to have run.
export function fieldLabel(key) {
  const field = (catalogueCache || []).find((f) => f.key === key);
  if (field) return field.label;
  if (key === 'role' || key === 'roles') return 'Statut';
  if (key === 'password') return 'Mot de passe';
  if (key === 'family') return 'Famille';
  return key;
}

// A stored value as staff read it: dates as dd/mm/yyyy, French phone
// numbers spaced, Galop codes as their label, booleans as oui/non.
// Needs loadCatalogue() to have run; unknown keys are shown as stored.
export function displayValue(key, value) {
  if (value === null || value === undefined || value === '') return '';
  const field = (catalogueCache || []).find((f) => f.key === key);
  const type = field ? field.type : null;
  if (key === 'galop') {
    const galop = (galopsCache || []).find((g) => g.code === value);
    return galop ? galop.label : String(value);
  }
  if (key === 'sex') return SEX_LABELS[value] || String(value);
  if (type === 'date') return formatDate(String(value));
  if (type === 'phone') return formatPhone(String(value));
  if (type === 'boolean') return ['1', 'true', 'oui', true].includes(value) ? 'oui' : 'non';
  return String(value);
}

// Groups fields into [title, fields] sections in catalogue order: by the
// catalogue's "group" when it has one, else by the core sections above,
// else one section per plugin.
export function groupFields(fields) {
  const sections = new Map();
  const add = (title, field) => {
    if (!sections.has(title)) sections.set(title, []);
    sections.get(title).push(field);
  };
  for (const field of fields) {
    const core = CORE_GROUPS.find(([, keys]) => keys.includes(field.key));
    if (field.group && field.plugin && field.group === field.plugin) add(`Informations du plugin « ${field.plugin} »`, field);
    else if (field.group) add(field.group, field);
    else if (core) add(core[0], field);
    else add(field.plugin ? `Informations du plugin « ${field.plugin} »` : 'Autres informations', field);
  }
  return [...sections.entries()];
}

// Text value of the API turned into the control's value.
function toControlValue(field, value) {
  if (value === null || value === undefined) return '';
  if (field.type === 'boolean') {
    if (value === true || value === '1' || value === 'true' || value === 'oui') return '1';
    if (value === false || value === '0' || value === 'false' || value === 'non') return '0';
    return '';
  }
  return String(value);
}

// Builds the control of one field. readonly fields show their value in a
// read-only control so that they stay in the tab order and readable.
export function buildField(field, value, options) {
  const { readonly, galops } = options;
  const spec = {
    name: field.key,
    label: field.label,
    required: Boolean(field.required) && !readonly,
    readonly,
    value: toControlValue(field, value),
  };
  if (field.key === 'galop' && galops && galops.length) {
    spec.type = 'select';
    spec.choices = [['', '— Aucun Galop —'], ...galops.map((g) => [g.code, g.label])];
    if (spec.value && !galops.some((g) => g.code === spec.value)) spec.choices.push([spec.value, spec.value]);
  } else if (field.type === 'choice' || (field.choices && field.choices.length)) {
    spec.type = 'select';
    const labels = field.key === 'sex' ? SEX_LABELS : {};
    spec.choices = [['', '— Non renseigné —'], ...(field.choices || []).map((c) => [c, labels[c] || c])];
    if (spec.value && !(field.choices || []).includes(spec.value)) spec.choices.push([spec.value, spec.value]);
  } else if (field.type === 'boolean') {
    spec.type = 'select';
    spec.choices = [['', '— Non renseigné —'], ['1', 'Oui'], ['0', 'Non']];
  } else {
    spec.type = INPUT_TYPES[field.type] || 'text';
    if (field.key === 'address') spec.type = 'textarea';
    if (field.type === 'number') {
      spec.step = 'any';
      spec.min = field.min;
      spec.max = field.max;
    }
    if (field.length) spec.maxlength = field.length;
    if (field.type === 'email') spec.autocomplete = 'off';
    if (field.type === 'phone') {
      spec.inputmode = 'tel';
      spec.value = formatPhone(spec.value);
    }
  }
  if (field.key === 'licence_number') spec.help = 'Sept chiffres suivis d’une lettre majuscule, par exemple 1234567A.';
  if (field.key === 'email') spec.help = 'Une même adresse peut être partagée par plusieurs membres d’une famille.';
  return formField(spec);
}

// Value of a control as the API expects it (text, "" for empty).
export function controlValue(formFieldResult) {
  return formFieldResult.control.value.trim();
}

// Renders grouped sections of fields into fieldsets. Returns {element,
// fields: key -> formField result}.
export function buildFieldsets(catalogue, values, options) {
  const fields = {};
  const sections = groupFields(catalogue).map(([title, members]) =>
    h('fieldset', { class: 'fieldset' },
      h('legend', {}, title),
      h('div', { class: 'field-grid' }, members.map((field) => {
        const built = buildField(field, values[field.key], {
          readonly: !options.isEditable(field.key),
          galops: options.galops,
        });
        fields[field.key] = built;
        return built.element;
      }))));
  return { element: h('div', { class: 'fieldsets' }, sections), fields };
}
