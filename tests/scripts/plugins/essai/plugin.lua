-- Test fixture plugin: one field of each kind of validation, every hook,
-- a route with a parameter and a migration.
return {
  name = "essai",
  version = "0.1",
  fields = {
    { key = "essai_code", label = "Code essai", type = "text", length = 6,
      pattern = "[A-Z]{2}[0-9]+", csv_aliases = { "Code" } },
    { key = "essai_couleur", label = "Couleur", type = "choice",
      choices = { "bai", "alezan", "gris" }, required = true },
    { key = "essai_actif", label = "Actif", type = "boolean" },
    { key = "essai_pair", label = "Nombre pair", type = "number", min = 0,
      validate = function(v)
        if tonumber((v:gsub(",", "."))) % 2 ~= 0 then return "doit être pair." end
      end },
  },
  hooks = {
    person_created = function(p) return { vu = p.id } end,
    person_updated = function(p) return nil end,
    import_row_mapped = function(r) r.essai_code = "AB" .. r.numero return r end,
    import_finished = function(r) error("échec volontaire") end,
    consent_recorded = function(c) return { texte = c.texte } end,
  },
  routes = {
    { method = "GET", path = "/echo/:mot", handler = function(req)
        return { status = 201, json = { mot = req.params.mot, q = req.query } }
      end },
    { method = "POST", path = "/casse", handler = function(req) error("route cassée") end },
  },
}
