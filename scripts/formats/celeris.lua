-- Export des clients d'un logiciel de gestion de club (Céléris) : UTF-8,
-- séparateur « , », champs entre guillemets, dates aaaa-mm-jj, 0000-00-00
-- pour une date inconnue, fin de validité de la licence donnée par une
-- année.
--
-- Comme pour la liste FFE, ajoutez ici les noms de colonnes de votre export
-- s'ils diffèrent.

local mapping = require("mapping")

local format = {}

format.label = "Export clients Céléris"

local columns = {
  sex = { "Sexe", "Civilité" },
  last_name = { "Nom" },
  first_name = { "Prénom" },
  email = { "E-mail", "Email" },
  member = { "Adhérent" },
  birth_date = { "Date naissance", "Date de naissance" },
  licence_number = { "N° licence", "Numéro licence" },
  licence_expiry = { "Expiration licence" },
  registered_at = { "Inscription", "Date d'inscription" },
  galop = { "Niveau", "Galop" },
  address = { "Adresse" },
  postcode = { "Code Postal", "CP" },
  city = { "Ville" },
  country = { "Pays" },
  phone = { "Telephone", "Téléphone" },
  mobile = { "Mobile", "Portable" },
  guardian_flag = { "Tuteur" },
  guardian_last_name = { "Nom du responsable" },
  guardian_first_name = { "Prénom du responsable" },
  guardian_email = { "E-mail tuteur", "Email tuteur" },
  guardian_phone = { "Telephone tuteur", "Téléphone tuteur" },
  guardian_mobile = { "Mobile tuteur" },
}

-- « Expiration licence » distingue cet export de la liste FFE.
local required = { "last_name", "first_name", "licence_expiry" }

format.columns = columns
format.required = required

function format.detect(headers)
  local score, cols, missing = mapping.resolve(columns, required, headers)
  return score, cols, missing, format.label
end

function format.map(row, cols)
  local record = mapping.person(row, cols)
  if record.last_name == "" and record.first_name == "" then
    return nil, "ni nom ni prénom"
  end

  -- L'année d'expiration est le millésime de la licence (une licence est
  -- valable jusqu'au 31 décembre) ; 0000 signifie « pas de licence ».
  local season = tonumber(mapping.raw(row, cols, "licence_expiry"):match("^%s*(%d%d%d%d)%s*$"))
  if season and season >= 1990 and record.licence_number then
    record.licence = { season = season, number = record.licence_number }
  end
  return record
end

function format.selftest()
  local score, cols = format.detect({ "Nom", "Prénom", "Expiration licence" })
  assert(score > 0, "détection du format Céléris")
  local r = format.map({ "schmitt", "Clara", "2026" }, cols)
  assert(r.last_name == "Schmitt", "lecture d'une ligne Céléris : nom « " .. tostring(r.last_name) .. " »")
end

return format
