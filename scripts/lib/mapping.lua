-- Outils communs aux formats d'import : reconnaissance des colonnes d'un
-- fichier et nettoyage des valeurs d'une personne. Les fichiers de
-- scripts/formats/ s'en servent ; un club peut les modifier sans toucher au
-- code C.
--
-- Chaque nettoyage appelle une fonction licol.norm.* (écrite en C pour la
-- vitesse) qui rend deux valeurs : le résultat et un état "ok", "empty"
-- (rien d'utilisable) ou "invalid" (une valeur incompréhensible, gardée
-- telle quelle pour que le personnel la voie).

local M = {}

local norm = licol.norm
local fold = licol.text.fold

-- Clé de comparaison d'un nom de colonne : minuscules, sans accents, sans
-- espaces ni ponctuation ("N° Licence" et "n licence" donnent "nlicence").
function M.header_key(name)
  return (fold(name or "", true))
end

-- Cherche les colonnes d'un format dans l'en-tête du fichier.
--   columns  : { clé = { "Nom de colonne", "autre nom possible", ... }, ... }
--   required : liste des clés sans lesquelles le format ne convient pas
--   headers  : les noms de colonnes lus dans la première ligne du fichier
-- Rend : score (0 à 100), cols (clé -> numéro de colonne), manquantes
-- (liste des noms de colonnes obligatoires absentes).
function M.resolve(columns, required, headers)
  local by_key = {}
  for i, h in ipairs(headers) do
    local k = M.header_key(h)
    if k ~= "" and by_key[k] == nil then
      by_key[k] = i
    end
  end

  local cols, found, total = {}, 0, 0
  for field, aliases in pairs(columns) do
    total = total + 1
    for _, alias in ipairs(aliases) do
      local i = by_key[M.header_key(alias)]
      if i then
        cols[field] = i
        found = found + 1
        break
      end
    end
  end

  -- Champs ajoutés par les plugins : leurs "csv_aliases".
  local plugin_cols = {}
  for _, f in ipairs(licol.fields) do
    if type(f.plugin) == "string" then
      for _, alias in ipairs(f.csv_aliases or {}) do
        local i = by_key[M.header_key(alias)]
        if i then
          plugin_cols[f.key] = i
          break
        end
      end
    end
  end
  cols._plugin = plugin_cols

  local missing = {}
  for _, field in ipairs(required) do
    if not cols[field] then
      missing[#missing + 1] = columns[field][1]
    end
  end
  if #missing > 0 then
    return 0, cols, missing
  end
  return math.floor(100 * found / total + 0.5), cols, missing
end

-- Valeur brute d'une colonne (chaîne vide si la colonne est absente).
local function raw(row, cols, key)
  local i = cols[key]
  if i == nil then
    return ""
  end
  return row[i] or ""
end
M.raw = raw

-- Ajoute un avertissement au résultat (il apparaît dans le rapport d'import).
local function warn(record, field, message)
  local w = record.warnings
  w[#w + 1] = { field = field, message = message }
end
M.warn = warn

-- Type de licence du fichier vers le vocabulaire de Licol : "pratiquant",
-- "competition-club", "competition-amateur", "competition-pro",
-- "competition" (niveau non précisé), "dirigeant" ou "enseignant". Une
-- valeur inconnue est gardée telle quelle.
function M.licence_type(value)
  local k = fold(value or "", true)
  if k == "" then return nil end
  k = k:gsub("^licence", "")
  for _, kind in ipairs({ "pratiquant", "dirigeant", "enseignant" }) do
    if k:find("^" .. kind) then return kind end
  end
  if k:find("^competition") then
    local level = k:match("^competition(%a+)$")
    if level == "club" or level == "amateur" or level == "pro" then
      return "competition-" .. level
    end
    return "competition"
  end
  return value
end

local categories = { junior = "junior", senior = "senior", moinsde18ans = "junior",
                     plusde18ans = "senior", adulte = "senior", enfant = "junior" }
function M.licence_category(value)
  local k = fold(value or "", true)
  if k == "" then return nil end
  return categories[k] or value
end

-- Nettoie les champs communs à tous les formats et rend l'enregistrement
-- d'une personne. Les clés de cols sont celles de M.person_columns.
function M.person(row, cols)
  local record = { warnings = {} }
  local value, status, second

  value = norm.name(raw(row, cols, "last_name"))
  record.last_name = value
  value = norm.name(raw(row, cols, "first_name"))
  record.first_name = value

  local birth = raw(row, cols, "birth_date")
  value, status = norm.date(birth)
  if status == "ok" then
    record.birth_date = value
  elseif status == "invalid" then
    warn(record, "birth_date", "date de naissance impossible « " .. birth .. " » : ignorée")
  end

  value, status = norm.sex(raw(row, cols, "sex"))
  if status == "ok" then record.sex = value end

  local licence = raw(row, cols, "licence_number")
  value, status = norm.licence(licence)
  if status == "ok" then
    record.licence_number = value
  elseif status == "invalid" then
    record.licence_raw = value
    warn(record, "licence_number", "numéro de licence invalide « " .. licence ..
         " » : conservé pour information, pas utilisé pour reconnaître la personne")
  end

  local email = raw(row, cols, "email")
  value, status, second = norm.email(email)
  if status == "ok" then
    record.email = value
    record.email2 = second
  elseif status == "invalid" then
    record.email_invalid = value
    warn(record, "email", "adresse e-mail invalide « " .. email ..
         " » : mise de côté, aucun mail n'y sera envoyé")
  end

  local country_raw = raw(row, cols, "country")
  value, status = norm.country(country_raw)
  if status == "ok" then
    record.country = value
  elseif status == "invalid" then
    warn(record, "country", "pays inconnu « " .. country_raw .. " »")
  end

  for _, key in ipairs({ "phone", "mobile" }) do
    local typed = raw(row, cols, key)
    value, status = norm.phone(typed)
    if status ~= "empty" then
      record[key] = value
      if status == "invalid" then
        warn(record, key, "numéro de téléphone non reconnu « " .. typed .. " » : gardé tel quel")
      end
    end
  end

  local postcode = raw(row, cols, "postcode")
  value, status = norm.postcode(postcode, record.country)
  if status ~= "empty" then
    record.postcode = value
    if status == "invalid" then
      warn(record, "postcode", "code postal non reconnu « " .. postcode .. " » : gardé tel quel")
    end
  end

  for _, key in ipairs({ "address", "address2", "city" }) do
    value, status = norm.text(raw(row, cols, key))
    if status == "ok" then record[key] = value end
  end

  local galop = raw(row, cols, "galop")
  value, status = norm.galop(galop)
  if status == "ok" then
    record.galop = value
  elseif status == "invalid" then
    warn(record, "galop", "niveau de Galop non reconnu « " .. galop .. " »")
  end

  -- Responsable légal (pour un mineur).
  local g_last = norm.name(raw(row, cols, "guardian_last_name"))
  local g_first = norm.name(raw(row, cols, "guardian_first_name"))
  if g_last ~= "" or g_first ~= "" then
    local guardian = { last_name = g_last, first_name = g_first }
    value, status = norm.email(raw(row, cols, "guardian_email"))
    if status == "ok" then guardian.email = value end
    for _, key in ipairs({ "phone", "mobile" }) do
      value, status = norm.phone(raw(row, cols, "guardian_" .. key))
      if status == "ok" then guardian[key] = value end
    end
    record.guardian = guardian
  end

  -- Champs des plugins (par exemple la taille et le poids), sous leur clé.
  for key, i in pairs(cols._plugin or {}) do
    value, status = norm.text(row[i] or "")
    if status == "ok" then record[key] = value end
  end

  return record
end

return M
