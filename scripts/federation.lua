-- Où Licol télécharge le fichier des licenciés de la fédération lors de la
-- mise à jour automatique (voir docs/mise-a-jour-automatique.md).
--
-- Licol appelle source(config) avant chaque téléchargement. config contient :
--   config.fetch_url        l'adresse du paramètre fetch_url ("" si absent)
--   config.has_credentials  true quand fetch_user est renseigné
--   config.club_name        le nom du club (paramètre club_name)
--   config.season           l'année en cours (millésime des licences), ex. 2026
--
-- source rend nil quand il n'y a rien à télécharger, sinon une table :
--   url      adresse http:// ou https:// du fichier (obligatoire)
--   method   "GET" (par défaut) ou "POST"
--   headers  en-têtes HTTP en plus, par exemple { Accept = "text/csv" }
--   body     corps envoyé avec "POST" (texte)
--   auth     "basic" pour envoyer l'identifiant et le mot de passe de la
--            configuration (fetch_user, fetch_password), nil sinon
--
-- Les identifiants ne s'écrivent jamais ici : Licol les lit dans la
-- configuration et les ajoute lui-même quand auth vaut "basic". Un en-tête
-- Authorization écrit dans ce fichier est refusé.
--
-- Le club peut modifier ce fichier : Licol le recharge dès qu'il est
-- enregistré et garde l'ancienne version si la nouvelle contient une erreur.

local federation = {}

function federation.source(config)
  if config.fetch_url == nil or config.fetch_url == "" then
    return nil
  end

  local requete = {
    url = config.fetch_url,
    method = "GET",
    headers = { Accept = "text/csv, */*" },
  }

  -- Identification auprès du serveur quand un identifiant est configuré.
  if config.has_credentials then
    requete.auth = "basic"
  end

  -- Exemple d'un serveur qui attend le numéro du club et la saison dans un
  -- formulaire envoyé en POST (à adapter, puis à décommenter) :
  --
  -- requete.method = "POST"
  -- requete.headers["Content-Type"] = "application/x-www-form-urlencoded"
  -- requete.body = "club=1234567&saison=" .. config.season

  return requete
end

function federation.selftest()
  assert(federation.source({ fetch_url = "" }) == nil, "sans adresse, rien à télécharger")
  local requete = federation.source({ fetch_url = "https://exemple.invalid/licencies.csv",
                                      has_credentials = true })
  assert(requete.method == "GET", "méthode GET par défaut")
  assert(requete.auth == "basic", "identifiants demandés quand ils sont configurés")
end

return federation
