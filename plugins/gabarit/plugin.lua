-- Extension « gabarit » : taille et poids des cavaliers.
--
-- Les moniteurs s'en servent pour attribuer à chaque cavalier un poney ou un
-- cheval adapté. La route /api/v1/plugins/gabarit/monture/<taille> propose
-- une catégorie de monture à partir de la taille du cavalier.

-- Catégorie de monture proposée selon la taille du cavalier (en cm).
-- HYPOTHÈSE à adapter par chaque club : ces seuils sont une règle
-- d'usage, pas une règle fédérale. Les catégories de poneys (A à D) suivent
-- la taille au garrot des poneys ; la correspondance avec la taille du
-- cavalier est une estimation.
local MONTURES = {
  { jusqu_a = 120, categorie = "poney A", libelle = "Poney A (jusqu'à 1,07 m au garrot)" },
  { jusqu_a = 140, categorie = "poney B", libelle = "Poney B (1,07 m à 1,30 m)" },
  { jusqu_a = 155, categorie = "poney C", libelle = "Poney C (1,30 m à 1,40 m)" },
  { jusqu_a = 165, categorie = "poney D", libelle = "Poney D (1,40 m à 1,49 m)" },
  { jusqu_a = math.huge, categorie = "cheval", libelle = "Cheval (plus de 1,49 m)" },
}

local function monture_pour(taille)
  for _, m in ipairs(MONTURES) do
    if taille <= m.jusqu_a then return m end
  end
end

-- Lit une taille écrite « 155 », « 1,55 », « 1.55 » ou « 1m55 » ; renvoie
-- des centimètres, ou nil.
local function taille_en_cm(texte)
  if texte == nil then return nil end
  local s = licol.text.trim(tostring(texte)):lower():gsub(",", ".")
  local m, cm = s:match("^(%d)m(%d%d?)$")
  if m then return tonumber(m) * 100 + tonumber(cm) end
  s = s:gsub("%s*cm$", "")
  local n = tonumber(s)
  if n == nil then return nil end
  if n < 3 then n = n * 100 end  -- écrit en mètres
  return math.floor(n + 0.5)
end

-- Lit un poids « 45 », « 45,5 » ou « 45 kg » ; renvoie des kilogrammes.
local function poids_en_kg(texte)
  if texte == nil then return nil end
  local s = licol.text.trim(tostring(texte)):lower():gsub(",", "."):gsub("%s*kg$", "")
  return tonumber(s)
end

local VOIR = { "gerant", "employe", "client", "proprietaire" }
local MODIFIER = { "gerant", "employe", "client", "proprietaire" }

return {
  name = "gabarit",
  version = "1.0",

  fields = {
    {
      key = "taille_cm", label = "Taille (cm)", type = "number",
      min = 60, max = 230,
      csv_aliases = { "Taille", "Taille (cm)", "Taille cavalier" },
      view = VOIR, edit = MODIFIER, public = true,
    },
    {
      key = "poids_kg", label = "Poids (kg)", type = "number",
      min = 10, max = 200,
      csv_aliases = { "Poids", "Poids (kg)", "Poids cavalier" },
      view = VOIR, edit = MODIFIER, public = true,
    },
  },

  hooks = {
    -- Les fichiers écrivent la taille en mètres ou en centimètres : on la
    -- ramène en centimètres avant la validation.
    import_row_mapped = function(ligne)
      if ligne.taille_cm ~= nil and ligne.taille_cm ~= "" then
        local cm = taille_en_cm(ligne.taille_cm)
        if cm then ligne.taille_cm = tostring(cm) end
      end
      if ligne.poids_kg ~= nil and ligne.poids_kg ~= "" then
        local kg = poids_en_kg(ligne.poids_kg)
        if kg then ligne.poids_kg = tostring(kg) end
      end
      return ligne
    end,
  },

  routes = {
    {
      method = "GET", path = "/monture/:taille",
      handler = function(requete)
        local taille = taille_en_cm(requete.params.taille)
        if taille == nil or taille < 60 or taille > 230 then
          return { status = 400, json = {
            error = "Taille invalide : indiquez une taille entre 60 et 230 cm." } }
        end
        local m = monture_pour(taille)
        return { status = 200, json = {
          taille_cm = taille, categorie = m.categorie, libelle = m.libelle } }
      end,
    },
  },

  selftest = function()
    local cas = { { "155", 155 }, { "1,55", 155 }, { "1m55", 155 }, { "1.2", 120 },
                  { "160 cm", 160 } }
    for _, c in ipairs(cas) do
      if taille_en_cm(c[1]) ~= c[2] then
        return false, "gabarit : « " .. c[1] .. " » mal converti"
      end
    end
    if monture_pour(110).categorie ~= "poney A" or monture_pour(180).categorie ~= "cheval" then
      return false, "gabarit : table des montures incohérente"
    end
    return true
  end,
}
