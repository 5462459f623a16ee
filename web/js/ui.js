// Reusable pieces of the interface: messages, form fields with their error
// text, the confirmation dialog and the "coming soon" panel.

import { h, replace, uniqueId } from './dom.js';

// A message box. kind: "error" (read at once by screen readers), "success"
// or "info" (read politely).
export function messageBox(kind, message, ...extra) {
  const role = kind === 'error' ? 'alert' : 'status';
  return h('div', { class: `message message--${kind}`, role }, h('p', {}, message), ...extra);
}

// Shows a message in a container reserved for it (empties it first).
export function showMessage(container, kind, message, ...extra) {
  replace(container, messageBox(kind, message, ...extra));
}

// A labelled form control with a help line and an error line, linked to
// the control by aria-describedby.
// spec: {name, label, type ("text", "email", "tel", "date", "number",
// "password", "search", "select", "checkbox", "textarea"), value, required,
// readonly, help, choices: [[value, label]], autocomplete, inputmode}.
// Returns {element, control, setError(message), clearError()}.
export function formField(spec) {
  const id = spec.id || uniqueId(`champ-${spec.name}`);
  const errorId = `${id}-erreur`;
  const helpId = `${id}-aide`;
  const describedBy = [spec.help ? helpId : null, errorId].filter(Boolean).join(' ');
  let control;

  if (spec.type === 'select') {
    control = h('select', { id, name: spec.name, required: spec.required, disabled: spec.readonly, 'aria-describedby': describedBy },
      (spec.choices || []).map(([value, label]) => h('option', { value, selected: String(spec.value ?? '') === String(value) }, label)));
  } else if (spec.type === 'textarea') {
    control = h('textarea', { id, name: spec.name, rows: 3, required: spec.required, readonly: spec.readonly, 'aria-describedby': describedBy });
    control.value = spec.value ?? '';
  } else if (spec.type === 'checkbox') {
    control = h('input', { id, name: spec.name, type: 'checkbox', checked: Boolean(spec.value), disabled: spec.readonly, 'aria-describedby': describedBy });
  } else {
    control = h('input', {
      id, name: spec.name, type: spec.type || 'text', required: spec.required, readonly: spec.readonly,
      autocomplete: spec.autocomplete, inputmode: spec.inputmode, 'aria-describedby': describedBy,
      step: spec.step, min: spec.min, max: spec.max, maxlength: spec.maxlength,
    });
    control.value = spec.value ?? '';
  }

  const error = h('p', { class: 'field__error', id: errorId, hidden: true });
  const labelText = [spec.label, spec.required ? h('span', { class: 'field__required' }, ' (obligatoire)') : null];
  const help = spec.help ? h('p', { class: 'field__help', id: helpId }, spec.help) : null;
  const element = spec.type === 'checkbox'
    ? h('div', { class: 'field field--checkbox' }, control, h('label', { for: id }, labelText), help, error)
    : h('div', { class: 'field' }, h('label', { for: id }, labelText), help, control, error);

  return {
    element,
    control,
    setError(message) {
      error.textContent = message;
      error.hidden = false;
      control.setAttribute('aria-invalid', 'true');
      element.classList.add('field--invalid');
    },
    clearError() {
      error.textContent = '';
      error.hidden = true;
      control.removeAttribute('aria-invalid');
      element.classList.remove('field--invalid');
    },
  };
}

// Shows the per-field messages of a 422 next to their fields. fields: map
// key -> formField result; messages: map key -> French message. Messages
// for keys with no field on the form are returned so that the caller can
// show them in the form's message area. Focuses the first invalid field.
export function showFieldErrors(fields, messages) {
  const unplaced = [];
  let first = null;
  for (const [key, message] of Object.entries(messages || {})) {
    const field = fields[key];
    if (field) {
      field.setError(message);
      if (!first) first = field;
    } else {
      unplaced.push(message);
    }
  }
  if (first) first.control.focus();
  return unplaced;
}

export function clearFieldErrors(fields) {
  for (const field of Object.values(fields)) field.clearError();
}

// Asks for confirmation in a modal dialog. Resolves to true when the user
// confirms. The dialog element gives focus trapping and Escape for free.
export function confirmDialog(title, message, confirmLabel) {
  return new Promise((resolve) => {
    const titleId = uniqueId('dialogue-titre');
    const dialog = h('dialog', { class: 'dialog', 'aria-labelledby': titleId },
      h('h2', { id: titleId }, title),
      h('p', {}, message),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'button button--danger', value: 'oui', onclick: () => dialog.close('oui') }, confirmLabel),
        h('button', { type: 'button', class: 'button button--secondary', onclick: () => dialog.close('non') }, 'Annuler')));
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'oui');
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
    dialog.querySelector('.button--secondary').focus();
  });
}

// Panel of a service that Licol does not provide yet. It states that the
// service is coming and shows no made-up content.
export function comingSoonPanel(title, description) {
  return h('section', { class: 'coming-soon' },
    h('h2', {}, title, ' ', h('span', { class: 'badge badge--soon' }, 'bientôt disponible')),
    h('p', {}, description),
    h('p', { class: 'muted' }, "Cette fonction n'est pas encore disponible dans Licol : aucune donnée n'est affichée ici pour l'instant."));
}

// Disables a button while an action runs and restores it afterwards.
export async function withBusy(button, busyLabel, action) {
  const label = button.textContent;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  if (busyLabel) button.textContent = busyLabel;
  try {
    return await action();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
    button.textContent = label;
  }
}
