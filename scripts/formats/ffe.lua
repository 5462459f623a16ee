-- Liste des licenciés téléchargée depuis l'espace club de la FFE :
-- Windows-1252, séparateur « ; », dates jj/mm/aaaa.
--
-- Les noms de colonnes ci-dessous sont ceux connus à ce jour. Si le fichier
-- de votre club en utilise d'autres, ajoutez-les à la liste de la colonne
-- concernée : la casse, les accents, les espaces et la ponctuation sont
-- ignorés lors de la comparaison.

local mapping = require("mapping")

local format = {}

format.label = "Liste des licenciés FFE"

local columns = {
  licence_number = { "Numéro licence", "N° licence", "Numéro de licence", "Licence" },
  last_name = { "Nom", "Nom de famille" },
  first_name = { "Prénom" },
  birth_date = { "Date de naissance", "Né le", "Naissance" },
  sex = { "Sexe" },
  licence_category = { "Catégorie", "Catégorie licence" },
  licence_type = { "Type licence", "Type de licence" },
  licence_season = { "Millésime", "Saison", "Année licence" },
  licence_taken_on = { "Date de saisie", "Date de prise de licence" },
  galop = { "Galop", "Niveau", "Niveau Galop" },
  address = { "Adresse", "Adresse 1" },
  address2 = { "Complément adresse", "Adresse 2", "Complément d'adresse" },
  postcode = { "Code postal", "CP" },
  city = { "Ville", "Commune" },
  country = { "Pays" },
  phone = { "Téléphone", "Tél", "Téléphone fixe" },
  mobile = { "Portable", "Mobile", "Téléphone portable" },
  email = { "Email", "E-mail", "Courriel", "Adresse e-mail" },
  guardian_last_name = { "Nom du responsable légal", "Nom responsable légal" },
  guardian_first_name = { "Prénom du responsable légal", "Prénom responsable légal" },
  guardian_email = { "Email du responsable légal", "E-mail du responsable légal" },
  club = { "Numéro club", "N° club", "Club" },
}

-- Sans ces colonnes, le fichier n'est pas une liste de licenciés FFE.
local required = { "licence_number", "last_name", "first_name", "licence_season" }

format.columns = columns
format.required = required

-- Rend un score de 0 à 100 (0 : ce n'est pas ce format), les colonnes
-- trouvées et la liste des colonnes obligatoires manquantes.
function format.detect(headers)
  local score, cols, missing = mapping.resolve(columns, required, headers)
  return score, cols, missing, format.label
end

-- Transforme une ligne du fichier en personne. Rend nil et une raison en
-- français pour refuser la ligne.
function format.map(row, cols)
  local record = mapping.person(row, cols)
  if record.last_name == "" and record.first_name == "" then
    return nil, "ni nom ni prénom"
  end

  local season = tonumber(mapping.raw(row, cols, "licence_season"):match("^%s*(%d%d%d%d)%s*$"))
  if season and record.licence_number then
    local taken_on, status = licol.norm.date(mapping.raw(row, cols, "licence_taken_on"))
    record.licence = {
      season = season,
      number = record.licence_number,
      type = mapping.licence_type(mapping.raw(row, cols, "licence_type")),
      category = mapping.licence_category(mapping.raw(row, cols, "licence_category")),
      club = licol.norm.text(mapping.raw(row, cols, "club")),
      taken_on = status == "ok" and taken_on or nil,
    }
  end
  return record
end

function format.selftest()
  local score, cols = format.detect({ "Numéro licence", "Nom", "Prénom", "Millésime" })
  assert(score > 0 and cols.last_name == 2, "détection du format FFE")
  local r = format.map({ "1234567a", "DUPONT", "jeanne", "2026" }, cols)
  assert(r.last_name == "Dupont" and r.licence.season == 2026, "lecture d'une ligne FFE")
end

return format
