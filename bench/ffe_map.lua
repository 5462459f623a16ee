-- Benchmark fixture: maps one row of the federation (FFE) licensee file,
-- keyed by column header, to a person record with the licol.norm helpers.
-- The real format script lives in scripts/formats/ once the import lands;
-- this one only has its shape.
local norm = licol.norm

local function detect(headers)
  for _, h in ipairs(headers) do
    if licol.text.fold(h, true) == "numerolicence" then return 1 end
  end
  return 0
end

local function map(ligne)
  local r = {}
  local status
  r.licence_number, status = norm.licence(ligne["Numéro licence"])
  if status ~= "ok" then r.licence_raw = ligne["Numéro licence"] end
  r.last_name = norm.name(ligne["Nom"])
  r.first_name = norm.name(ligne["Prénom"])
  r.birth_date = norm.date(ligne["Date de naissance"])
  r.sex = norm.sex(ligne["Sexe"])
  r.category = licol.text.lower(ligne["Catégorie"])
  r.licence_type = ligne["Type licence"]
  r.season = tonumber(ligne["Millésime"])
  r.taken_on = norm.date(ligne["Date de saisie"])
  r.galop = norm.galop(ligne["Galop"])
  r.address = norm.text(ligne["Adresse"])
  r.address2 = norm.text(ligne["Complément adresse"])
  r.country = norm.country(ligne["Pays"])
  r.postcode = norm.postcode(ligne["Code postal"], r.country)
  r.city = norm.text(ligne["Ville"])
  r.phone = norm.phone(ligne["Téléphone"])
  r.mobile = norm.phone(ligne["Portable"])
  r.email, status, r.email2 = norm.email(ligne["Email"])
  local tuteur = norm.name(ligne["Nom du responsable légal"])
  if tuteur ~= "" then
    r.guardian = {
      last_name = tuteur,
      first_name = norm.name(ligne["Prénom du responsable légal"]),
      email = norm.email(ligne["Email du responsable légal"]),
    }
  end
  r.club = ligne["Numéro club"]
  return r
end

return { detect = detect, map = map }
