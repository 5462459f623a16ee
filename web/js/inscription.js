// Public registration form (inscription.html): identity, contact, address,
// FFE licence, legal guardian of a minor, the club's public extra fields,
// the terms and each optional consent (unticked boxes), and a hidden field
// that only bots fill. The same page confirms the address when opened from
// the link of the verification mail (#confirmer=<jeton>); the token stays
// in the fragment, so it never appears in a request line or a Referer.

import { api, ApiError } from './api.js';
import { h, replace, announce } from './dom.js';
import { formField, messageBox, showFieldErrors, clearFieldErrors, withBusy } from './ui.js';

const main = document.getElementById('contenu');

// Labels and input settings of the core fields, worded for the public.
const CORE = {
  last_name: { label: 'Nom', autocomplete: 'family-name' },
  first_name: { label: 'Prénom', autocomplete: 'given-name' },
  sex: { label: 'Sexe', choices: [['', '—'], ['F', 'Féminin'], ['M', 'Masculin']] },
  birth_date: { label: 'Date de naissance', autocomplete: 'bday' },
  email: { label: 'Adresse e-mail', autocomplete: 'email', inputmode: 'email',
    help: 'Un lien de confirmation y sera envoyé. Pour un enfant, vous pouvez donner l’adresse d’un parent.' },
  mobile: { label: 'Téléphone portable', autocomplete: 'tel', inputmode: 'tel' },
  phone: { label: 'Téléphone fixe', autocomplete: 'tel', inputmode: 'tel' },
  address: { label: 'Adresse', autocomplete: 'address-line1' },
  address2: { label: 'Complément d’adresse', autocomplete: 'address-line2' },
  postcode: { label: 'Code postal', autocomplete: 'postal-code', inputmode: 'numeric' },
  city: { label: 'Ville', autocomplete: 'address-level2' },
  country: { label: 'Pays', autocomplete: 'country-name', help: 'Laissez vide pour la France.' },
  licence_number: { label: 'Numéro de licence FFE',
    help: 'Si vous avez déjà une licence : sept chiffres et une lettre, par exemple 1234567A. Sinon, laissez vide.' },
};

const SECTIONS = [
  ['Identité', ['last_name', 'first_name', 'sex', 'birth_date']],
  ['Coordonnées', ['email', 'mobile', 'phone']],
  ['Adresse', ['address', 'address2', 'postcode', 'city', 'country']],
  ['Licence', ['licence_number']],
];

const GUARDIAN = [
  ['last_name', 'Nom du responsable légal', 'text', 'family-name'],
  ['first_name', 'Prénom du responsable légal', 'text', 'given-name'],
  ['email', 'E-mail du responsable légal', 'email', 'email'],
  ['phone', 'Téléphone du responsable légal', 'tel', 'tel'],
];

const INPUT_TYPES = { text: 'text', number: 'number', date: 'date', email: 'email', phone: 'tel', boolean: 'checkbox', choice: 'select' };

// Age in whole years on today, or null when date (yyyy-mm-dd) is empty.
function ageOn(date, today = new Date()) {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date || '');
  if (!match) return null;
  const [year, month, day] = match.slice(1).map(Number);
  let age = today.getFullYear() - year;
  if (today.getMonth() + 1 < month || (today.getMonth() + 1 === month && today.getDate() < day)) age -= 1;
  return age;
}

function fieldSpec(def, required) {
  const core = CORE[def.key] || {};
  const spec = {
    name: def.key,
    label: core.label || def.label,
    type: INPUT_TYPES[def.type] || 'text',
    required,
    help: core.help,
    autocomplete: core.autocomplete,
    inputmode: core.inputmode,
    min: def.min,
    max: def.max,
  };
  if (def.type === 'number') spec.step = 'any';
  if (def.type === 'choice') spec.choices = core.choices || [['', '—'], ...(def.choices || []).map((c) => [c, c])];
  return spec;
}

function fieldValue(field) {
  const control = field.control;
  if (control.type === 'checkbox') return control.checked ? '1' : '';
  return control.value.trim();
}

// Shows the required mark of a field (the label's "(obligatoire)").
function setRequired(field, required) {
  field.control.required = required;
  const label = field.element.querySelector('label');
  let mark = label.querySelector('.field__required');
  if (required && !mark) label.append(h('span', { class: 'field__required' }, ' (obligatoire)'));
  if (!required && mark) mark.remove();
}

function consentBlock(doc, fields) {
  const field = formField({
    name: `consents.${doc.key}`,
    label: doc.required ? `J’accepte : ${doc.title}` : doc.title,
    type: 'checkbox',
    value: false,
    required: Boolean(doc.required),
  });
  fields[`consents.${doc.key}`] = field;
  return h('div', { class: 'consent' }, field.element,
    doc.text ? h('details', {}, h('summary', {}, `Lire le texte (version ${doc.version})`), h('div', {}, doc.text)) : null);
}

function showSent(message) {
  replace(main,
    h('h1', { tabindex: '-1' }, 'Inscription envoyée'),
    messageBox('success', message),
    h('p', {}, 'Vous pouvez fermer cette page. Le lien de l’e-mail vous ramènera ici.'));
  main.querySelector('h1').focus();
  announce('Inscription envoyée');
}

async function renderForm() {
  const form = await api('GET', '/inscription/formulaire');
  const defs = new Map(form.fields.map((def) => [def.key, def]));
  const requiredAdult = new Set(form.required_adult);
  const requiredMinor = new Set(form.required_minor);
  const fields = {};
  const guardianFields = {};
  const messages = h('div', { class: 'form-messages' });

  const sections = SECTIONS.map(([title, keys]) => {
    const present = keys.filter((key) => defs.has(key));
    if (!present.length) return null;
    return h('fieldset', { class: 'fieldset' }, h('legend', {}, title),
      h('div', { class: 'field-grid' }, present.map((key) => {
        fields[key] = formField(fieldSpec(defs.get(key), requiredAdult.has(key)));
        return fields[key].element;
      })));
  });

  const extraDefs = form.fields.filter((def) => !CORE[def.key]);
  const extra = extraDefs.length
    ? h('fieldset', { class: 'fieldset' }, h('legend', {}, 'Informations complémentaires'),
      h('div', { class: 'field-grid' }, extraDefs.map((def) => {
        fields[def.key] = formField(fieldSpec(def, requiredAdult.has(def.key)));
        return fields[def.key].element;
      })))
    : null;

  const guardian = h('fieldset', { class: 'fieldset', id: 'responsable', hidden: true },
    h('legend', {}, 'Responsable légal'),
    h('p', { class: 'field__help' }, `Le cavalier a moins de ${form.majority_age} ans : indiquez la personne qui en a la charge.`),
    h('div', { class: 'field-grid' }, GUARDIAN.map(([key, label, type, autocomplete]) => {
      guardianFields[key] = formField({ name: `guardian.${key}`, label, type, required: true, autocomplete: `section-responsable ${autocomplete}` });
      fields[`guardian.${key}`] = guardianFields[key];
      return guardianFields[key].element;
    })));

  const required = form.documents.filter((doc) => doc.required);
  const optional = form.documents.filter((doc) => !doc.required);
  const terms = required.length
    ? h('fieldset', { class: 'fieldset' }, h('legend', {}, 'Conditions du club'), required.map((doc) => consentBlock(doc, fields)))
    : null;
  const choices = optional.length
    ? h('fieldset', { class: 'fieldset' }, h('legend', {}, 'Vos choix (facultatifs)'),
      h('p', { class: 'field__help' }, 'Chaque case est indépendante : cochez seulement ce que vous acceptez. Vous pourrez changer d’avis à tout moment.'),
      optional.map((doc) => consentBlock(doc, fields)))
    : null;

  // Out of sight for people (see inscription.css). A bot that fills it gets
  // the usual response and nothing is recorded.
  const trap = h('div', { class: 'piege', 'aria-hidden': 'true' },
    h('label', { for: 'site-web' }, 'Ne remplissez pas ce champ'),
    h('input', { id: 'site-web', name: form.honeypot, type: 'text', tabindex: '-1', autocomplete: 'off' }));

  const submit = h('button', { type: 'submit', class: 'button' }, 'Envoyer mon inscription');
  const formEl = h('form', { class: 'form', novalidate: true },
    messages, sections, guardian, extra, terms, choices, trap,
    h('div', { class: 'submit-row' }, submit));

  function updateMinor() {
    const age = ageOn(fields.birth_date ? fields.birth_date.control.value : '');
    const minor = age !== null && age >= 0 && age < form.majority_age;
    guardian.hidden = !minor;
    const wanted = minor ? requiredMinor : requiredAdult;
    for (const [key, field] of Object.entries(fields)) {
      if (defs.has(key)) setRequired(field, wanted.has(key));
    }
    return minor;
  }
  if (fields.birth_date) fields.birth_date.control.addEventListener('change', updateMinor);
  if (fields.birth_date) fields.birth_date.control.addEventListener('input', updateMinor);

  formEl.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(fields);
    replace(messages);
    const minor = updateMinor();
    const body = { fields: {}, guardian: null, consents: {}, version_ids: {}, [form.honeypot]: formEl.elements[form.honeypot].value };
    for (const key of defs.keys()) {
      if (fields[key]) body.fields[key] = fieldValue(fields[key]);
    }
    if (minor) {
      body.guardian = {};
      for (const [key, field] of Object.entries(guardianFields)) body.guardian[key] = fieldValue(field);
    }
    for (const doc of form.documents) {
      body.consents[doc.key] = fields[`consents.${doc.key}`].control.checked;
      body.version_ids[doc.key] = doc.version_id;
    }

    await withBusy(submit, 'Envoi…', async () => {
      try {
        const result = await api('POST', '/inscription', body);
        showSent(result.message);
      } catch (err) {
        if (err instanceof ApiError && err.status === 422) {
          const unplaced = showFieldErrors(fields, err.fields);
          replace(messages, messageBox('error', 'Certaines informations sont à corriger : voyez les messages sous les champs signalés.',
            unplaced.length ? h('ul', {}, unplaced.map((m) => h('li', {}, m))) : null));
          if (!Object.keys(err.fields).some((key) => fields[key])) messages.scrollIntoView();
        } else {
          replace(messages, messageBox('error', err.message || String(err)));
          messages.scrollIntoView();
        }
      }
    });
  });

  replace(main,
    h('h1', {}, 'Inscription en ligne'),
    h('p', { class: 'intro' }, 'Remplissez ce formulaire pour vous inscrire au club, ou pour inscrire votre enfant. Vous recevrez un e-mail pour confirmer votre adresse ; l’équipe du club validera ensuite votre inscription.'),
    formEl);
  updateMinor();
}

async function confirm(token) {
  replace(main, h('h1', {}, 'Confirmation de votre inscription'), h('p', { class: 'loading' }, 'Confirmation en cours…'));
  history.replaceState(null, '', location.pathname);
  try {
    const result = await api('POST', '/inscription/confirmation', { token });
    replace(main, h('h1', { tabindex: '-1' }, 'Adresse confirmée'), messageBox('success', result.message));
  } catch (err) {
    replace(main, h('h1', { tabindex: '-1' }, 'Lien non valable'), messageBox('error', err.message || String(err)),
      h('p', {}, h('a', { href: location.pathname }, 'Remplir le formulaire d’inscription')));
  }
  main.querySelector('h1').focus();
}

async function start() {
  const token = (/confirmer=([A-Za-z0-9_-]{43})/.exec(location.hash) || [])[1];
  try {
    if (token) await confirm(token);
    else await renderForm();
  } catch (err) {
    replace(main, h('h1', {}, 'Inscription en ligne'), messageBox('error', err.message || String(err)),
      h('p', {}, h('button', { type: 'button', class: 'button', onclick: () => start() }, 'Réessayer')));
  }
}

// Opening the mail's link in a tab that already shows this page changes
// only the fragment, which reloads nothing.
window.addEventListener('hashchange', () => {
  if (/confirmer=/.test(location.hash)) start();
});

start();
