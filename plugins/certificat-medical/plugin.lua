-- Extension « certificat-medical » : date du certificat médical d'un
-- cavalier, et avertissement quand il est trop ancien pour une licence de
-- compétition.
--
-- RÈGLE SUPPOSÉE, à vérifier auprès de la fédération : une licence de
-- compétition demande un certificat médical daté de moins de 12 mois
-- (365 jours). Un club peut changer DUREE_VALIDITE_JOURS ci-dessous.

local DUREE_VALIDITE_JOURS = 365

-- Nombre de jours entre deux dates « aaaa-mm-jj » (b - a), ou nil.
local function jours_entre(a, b)
  local function temps(d)
    local y, m, j = tostring(d):match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
    if not y then return nil end
    return os.time({ year = tonumber(y), month = tonumber(m), day = tonumber(j), hour = 12 })
  end
  local ta, tb = temps(a), temps(b)
  if not ta or not tb then return nil end
  return math.floor((tb - ta) / 86400 + 0.5)
end

local function aujourd_hui()
  return os.date("!%Y-%m-%d")
end

-- État du certificat à la date du jour : "valide", "expire", "absent" ou
-- "invalide", et un message en français quand il n'est pas valide.
local function etat(date_certificat, jour)
  jour = jour or aujourd_hui()
  if date_certificat == nil or date_certificat == "" then
    return "absent", "Aucun certificat médical enregistré : il est nécessaire pour une licence de compétition."
  end
  local age = jours_entre(date_certificat, jour)
  if age == nil then
    return "invalide", "La date du certificat médical est illisible."
  end
  if age > DUREE_VALIDITE_JOURS then
    return "expire", "Le certificat médical du " .. date_certificat ..
      " a plus de 12 mois : il ne permet plus une licence de compétition."
  end
  return "valide", nil
end

-- Avertissements pour une fiche : seulement quand la licence est de
-- compétition (ou inconnue : on préfère prévenir).
local function avertir(fiche)
  local champs = fiche.fields or fiche
  local licence = fiche.licence_type or (fiche.licence and fiche.licence.type)
  if licence ~= nil and licence ~= "competition" then return nil end
  local statut, message = etat(champs.certificat_medical_date)
  if statut == "valide" then return nil end
  return { statut = statut, avertissements = { message } }
end

return {
  name = "certificat-medical",
  version = "1.0",

  fields = {
    {
      key = "certificat_medical_date", label = "Date du certificat médical", type = "date",
      csv_aliases = { "Date certificat médical", "Certificat médical", "Date du certificat" },
      view = { "gerant", "employe", "client" },
      edit = { "gerant", "employe" },
      public = true,
      -- Une date dans le futur est une erreur de saisie.
      validate = function(valeur)
        if valeur > aujourd_hui() then
          return false, "la date ne peut pas être dans le futur."
        end
        return true
      end,
    },
  },

  hooks = {
    person_created = avertir,
    person_updated = avertir,
  },

  routes = {
    {
      method = "GET", path = "/etat/:date",
      handler = function(requete)
        local statut, message = etat(requete.params.date)
        return { status = 200, json = { statut = statut, message = message } }
      end,
    },
  },

  selftest = function()
    if etat("2024-03-01", "2025-02-28") ~= "valide" then return false, "certificat récent refusé" end
    if etat("2024-03-01", "2025-03-02") ~= "expire" then return false, "certificat ancien accepté" end
    if etat("", "2025-01-01") ~= "absent" then return false, "certificat absent non signalé" end
    return true
  end,
}
