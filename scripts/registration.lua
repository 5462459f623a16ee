-- Inscription en ligne : ce que le formulaire public exige et le rôle donné
-- à la personne qui s'inscrit.
--
-- Licol appelle :
--
--   reglages()          une fois par demande, avant de lire le formulaire ;
--                       rend une table :
--     max_par_ip        nombre d'inscriptions acceptées depuis une même
--                       adresse IP pendant fenetre_minutes (contre les robots)
--     fenetre_minutes   durée de cette fenêtre, en minutes
--     age_majorite      en dessous de cet âge, un responsable légal est
--                       obligatoire
--     validite_heures   durée de validité du lien de confirmation envoyé par
--                       e-mail, en heures
--
--   regles(candidat)    pour chaque inscription ; candidat contient les
--                       champs saisis (last_name, first_name, birth_date,
--                       licence_number, email...), plus :
--     candidat.age      l'âge en années à la date du jour
--     candidat.mineur   true quand age < age_majorite
--   et rend une table :
--     obligatoires      liste des clés de champs à remplir (les champs
--                       des plugins se désignent par leur clé)
--     role              rôle donné dès que l'adresse e-mail est confirmée :
--                       "visiteur" (en attente de validation par l'équipe),
--                       "client", ou nil pour ne créer la fiche qu'à la
--                       validation
--     role_valide       rôle donné quand l'équipe valide l'inscription
--
-- Le club peut modifier ce fichier : Licol le recharge dès qu'il est
-- enregistré et garde l'ancienne version si la nouvelle contient une erreur.

local inscription = {}

function inscription.reglages()
  return {
    max_par_ip = 10,
    fenetre_minutes = 60,
    age_majorite = 18,
    validite_heures = 48,
  }
end

function inscription.regles(candidat)
  local obligatoires = {
    "last_name", "first_name", "sex", "birth_date", "email",
    "address", "postcode", "city",
  }

  -- Un adulte laisse au moins un numéro de téléphone ; pour un mineur, le
  -- téléphone du responsable légal suffit.
  if not candidat.mineur then
    table.insert(obligatoires, "mobile")
  end

  return {
    obligatoires = obligatoires,
    -- Visiteur jusqu'à la validation par l'équipe, puis client.
    role = "visiteur",
    role_valide = "client",
  }
end

function inscription.selftest()
  local r = inscription.reglages()
  assert(r.max_par_ip > 0 and r.fenetre_minutes > 0, "limite par adresse IP")
  assert(r.age_majorite == 18, "majorité à 18 ans")

  local adulte = inscription.regles({ age = 30, mineur = false })
  local enfant = inscription.regles({ age = 9, mineur = true })
  local function contient(liste, cle)
    for _, v in ipairs(liste) do
      if v == cle then return true end
    end
    return false
  end
  assert(contient(adulte.obligatoires, "mobile"), "téléphone obligatoire pour un adulte")
  assert(not contient(enfant.obligatoires, "mobile"), "téléphone facultatif pour un mineur")
  assert(contient(enfant.obligatoires, "birth_date"), "date de naissance obligatoire")
  assert(adulte.role == "visiteur" and adulte.role_valide == "client", "rôles")
end

return inscription
