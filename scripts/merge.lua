-- Règles de fusion lors d'un nouvel import : pour chaque champ, que faire
-- quand le fichier apporte une valeur et que Licol en connaît déjà une ?
--
--   "newest"  : la valeur la plus récente l'emporte (celle du fichier, sauf
--               si le fichier est d'une saison plus ancienne que la dernière
--               licence connue de la personne)
--   "fill"    : le fichier complète seulement un champ vide ; avec
--               « Remplacer les données », il remplace une valeur existante
--   "keep"    : le fichier ne modifie jamais ce champ
--
-- Dans tous les cas, une valeur vide dans le fichier n'efface jamais ce que
-- Licol connaît.
--
-- Un champ absent de la liste suit la règle "default". Les champs des
-- plugins se désignent par leur clé (par exemple « taille »).

local merge = {}

local rules = {
  default = "fill",

  -- Ce qui vient de la licence suit toujours le fichier le plus récent.
  licence_number = "newest",
  galop = "newest",
}

function merge.policy()
  return rules
end

function merge.selftest()
  assert(rules.default == "fill", "règle par défaut")
end

return merge
