-- Qui peut faire quoi dans Licol.
--
-- Ce fichier décide de chaque autorisation : le serveur demande
-- can(sujet, action, cible) avant chaque opération et refuse si la réponse
-- n'est pas true. Le club peut le modifier : Licol le recharge dès qu'il est
-- enregistré, et garde l'ancienne version si la nouvelle contient une erreur
-- (l'erreur s'affiche sur la page d'état des scripts).
--
-- sujet  = { id = <numéro de la personne>, roles = { gerant = true, ... } }
--          (une personne peut cumuler plusieurs rôles ; un jeton d'API n'en
--          porte qu'un)
-- action = un des noms de la liste ACTIONS ci-dessous
-- cible  = nil, ou { person_id = n, is_self = true/false (la personne
--          elle-même), is_family = true/false (un membre de sa famille),
--          role = "<rôle attribué ou retiré>" pour rider.roles.update }

-- Toutes les actions que le serveur peut demander.
local ACTIONS = {
  "riders.list", "rider.read", "rider.create", "rider.update", "rider.delete",
  "rider.roles.update", "family.update",
  "import.run", "import.read", "import.undo",
  "settings.read", "settings.update", "scripts.status",
  "finance.read", "finance.update",
  "mail.send", "outbox.read", "consent.manage", "registrations.manage",
  "horses.read", "tokens.manage",
}

-- Conditions sur la cible. Chaque règle ci-dessous en nomme une.
local CONDITIONS = {
  -- Sans condition.
  toujours = function(cible) return true end,
  -- Seulement sur sa propre fiche.
  soi = function(cible) return cible ~= nil and cible.is_self == true end,
  -- Sur sa propre fiche ou celle d'un membre de sa famille.
  soi_ou_famille = function(cible)
    return cible ~= nil and (cible.is_self == true or cible.is_family == true)
  end,
  -- Attribuer ou retirer un rôle, sauf le rôle de gérant.
  role_sauf_gerant = function(cible)
    return cible ~= nil and cible.role ~= nil and cible.role ~= "gerant"
  end,
}

-- Les règles : pour chaque rôle, les actions permises et leur condition.
-- "*" désigne toutes les actions. Une personne qui a plusieurs rôles peut
-- faire ce que permet l'un quelconque d'entre eux.
local REGLES = {
  -- Gérant : tout.
  gerant = {
    ["*"] = "toujours",
  },

  -- Employé : gère les cavaliers, les familles et les imports, mais ni les
  -- réglages, ni les finances, ni les jetons d'API, ni le rôle de gérant.
  employe = {
    ["riders.list"] = "toujours",
    ["rider.read"] = "toujours",
    ["rider.create"] = "toujours",
    ["rider.update"] = "toujours",
    ["rider.delete"] = "toujours",
    ["rider.roles.update"] = "role_sauf_gerant",
    ["family.update"] = "toujours",
    ["import.run"] = "toujours",
    ["import.read"] = "toujours",
    ["import.undo"] = "toujours",
    ["mail.send"] = "toujours",
    ["outbox.read"] = "toujours",
    ["consent.manage"] = "toujours",
    ["registrations.manage"] = "toujours",
    ["scripts.status"] = "toujours",
  },

  -- Comptable : lit les fiches des cavaliers et tout ce qui est financier.
  comptable = {
    ["riders.list"] = "toujours",
    ["rider.read"] = "toujours",
    ["finance.read"] = "toujours",
    ["finance.update"] = "toujours",
  },

  -- Client : consulte et modifie sa fiche et celles de sa famille.
  client = {
    ["rider.read"] = "soi_ou_famille",
    ["rider.update"] = "soi_ou_famille",
    ["family.update"] = "soi_ou_famille",
  },

  -- Propriétaire : comme un client, et consulte les chevaux.
  proprietaire = {
    ["rider.read"] = "soi_ou_famille",
    ["rider.update"] = "soi_ou_famille",
    ["family.update"] = "soi_ou_famille",
    ["horses.read"] = "toujours",
  },

  -- Visiteur : seulement sa propre fiche.
  visiteur = {
    ["rider.read"] = "soi",
    ["rider.update"] = "soi",
  },
}

local ACTION_CONNUE = {}
for _, action in ipairs(ACTIONS) do ACTION_CONNUE[action] = true end

local function role_permet(role, action, cible)
  local regles = REGLES[role]
  if regles == nil then return false end
  local nom = regles[action] or regles["*"]
  if nom == nil then return false end
  local condition = CONDITIONS[nom]
  return condition ~= nil and condition(cible) == true
end

local M = {}

-- Renvoie true si sujet peut faire action sur cible, sinon false et la
-- raison du refus.
function M.can(sujet, action, cible)
  if not ACTION_CONNUE[action] then
    return false, "Action inconnue : " .. tostring(action)
  end
  for role in pairs(sujet.roles or {}) do
    if role_permet(role, action, cible) then return true end
  end
  return false, "Votre rôle ne permet pas cette action."
end

-- Vérifié à chaque chargement : un cas faux empêche la nouvelle version de
-- remplacer l'ancienne.
function M.selftest()
  local function sujet(...)
    local roles = {}
    for _, r in ipairs({...}) do roles[r] = true end
    return { id = 1, roles = roles }
  end
  local soi = { person_id = 1, is_self = true, is_family = false }
  local autre = { person_id = 2, is_self = false, is_family = false }
  local cas = {
    { sujet("gerant"), "settings.update", nil, true },
    { sujet("employe"), "settings.update", nil, false },
    { sujet("employe"), "rider.roles.update", { role = "gerant" }, false },
    { sujet("client"), "rider.read", soi, true },
    { sujet("client"), "rider.read", autre, false },
    { sujet("visiteur"), "riders.list", nil, false },
  }
  for i, c in ipairs(cas) do
    if M.can(c[1], c[2], c[3]) ~= c[4] then
      return false, "roles.lua : le cas de contrôle " .. i .. " (" .. c[2] .. ") a échoué"
    end
  end
  for role in pairs(REGLES) do
    for action, nom in pairs(REGLES[role]) do
      if action ~= "*" and not ACTION_CONNUE[action] then
        return false, "roles.lua : action inconnue « " .. action .. " » pour " .. role
      end
      if CONDITIONS[nom] == nil then
        return false, "roles.lua : condition inconnue « " .. nom .. " » pour " .. role
      end
    end
  end
  return true
end

return M
