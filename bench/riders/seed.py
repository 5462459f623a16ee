"""Fill a Licol database with synthetic riders for the list benchmark.

Usage: seed.py DB COUNT

Writes COUNT people straight into the tables (no import), with roles in
the proportions of a club (mostly clients), a licence for the current year
for most of them, and a Galop. search_text is filled in the same folded
form as the server writes it, so searches behave as in production.
"""

import datetime
import random
import sqlite3
import sys
import unicodedata

LAST = ["Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois", "Moreau",
        "Laurent", "Simon", "Michel", "Lefèvre", "Leroy", "Roux", "David", "Bertrand", "Morel",
        "Fournier", "Girard", "Bonnet", "Dupont", "Lambert", "Fontaine", "Rousseau", "Vincent"]
FIRST = ["Léa", "Emma", "Chloé", "Inès", "Manon", "Jade", "Louise", "Thérèse", "Zoé", "Camille",
         "Lucas", "Hugo", "Jules", "Louis", "Arthur", "Raphaël", "Gabriel", "Anaïs", "Noémie"]
GALOPS = [None, "galop-1", "galop-2", "galop-3", "galop-4", "galop-5", "poney-bronze", "galop-or"]


def fold(text):
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return " ".join("".join(c if c.isalnum() else " " for c in text).split())


def main():
    db_path, count = sys.argv[1], int(sys.argv[2])
    rng = random.Random(1)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    year = datetime.date.today().year
    db = sqlite3.connect(db_path, timeout=30)
    with db:
        for n in range(count):
            last, first = rng.choice(LAST), rng.choice(FIRST)
            email = "%s.%s%d@example.fr" % (fold(first).replace(" ", ""), fold(last), n)
            mobile = "+336%08d" % rng.randrange(10 ** 8)
            licence = "%07d%s" % (1000000 + n, chr(65 + n % 26))
            birth = "%04d-%02d-%02d" % (rng.randint(1960, 2020), rng.randint(1, 12), rng.randint(1, 28))
            search = "%s %s %s %s %s 0%s" % (fold(last + " " + first), email, licence.lower(),
                                            mobile, mobile, mobile[3:])
            cur = db.execute(
                "INSERT INTO person (last_name, first_name, birth_date, email, mobile, licence_number,"
                " galop, search_text, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (last, first, birth, email, mobile, licence, rng.choice(GALOPS), search, now, now))
            person = cur.lastrowid
            roll = rng.random()
            if roll < 0.7:
                roles = ["client"]
            elif roll < 0.9:
                roles = ["visiteur"]
            elif roll < 0.97:
                roles = ["client", "proprietaire"]
            else:
                roles = ["employe"]
            for role in roles:
                db.execute("INSERT INTO person_role (person_id, role) VALUES (?, ?)", (person, role))
            if rng.random() < 0.8:
                db.execute("INSERT INTO licence (person_id, season, number, type) VALUES (?, ?, ?, 'pratiquant')",
                           (person, year, licence))
    db.close()


if __name__ == "__main__":
    main()
