-- Demande d'accord aux conditions du club (RGPD) : quand envoyer le mail
-- avec le lien personnel, et quand relancer ceux qui n'ont pas répondu.
--
-- Licol envoie un seul mail par adresse : quand une famille partage une
-- adresse, le titulaire du compte de la famille répond pour chacun de ses
-- membres. Seules les personnes qui n'ont pas encore accepté la version en
-- vigueur des conditions reçoivent le mail.

local consent = {}

-- Après un import de cavaliers, faut-il demander l'accord tout de suite ?
--
--   "automatique" : le mail part dès la fin de l'import, à chaque client
--                   créé ou modifié qui n'a pas accepté la version en vigueur
--   "bouton"      : rien ne part seul ; l'équipe envoie les mails depuis
--                   « Gestion du consentement » (bouton « Demander l'accord »)
--
-- import = { id = <numéro de l'import> }
function consent.apres_import(import)
  return "bouton"
end

-- Relances : nombre de jours après le premier mail. Une personne qui n'a
-- toujours pas répondu reçoit une relance à chacune de ces dates, donc au
-- plus autant de relances que de nombres dans la liste. Liste vide : pas de
-- relance. Les nombres doivent aller en croissant.
local RELANCES = { 7, 21 }

function consent.relances()
  return RELANCES
end

function consent.selftest()
  local choix = consent.apres_import({ id = 1 })
  assert(choix == "automatique" or choix == "bouton", "apres_import : automatique ou bouton")
  for i = 2, #RELANCES do
    assert(RELANCES[i] > RELANCES[i - 1], "relances : des nombres croissants")
  end
end

return consent
