"""Generate the search benchmark's data set as NDJSON, deterministically (seeded).

500 Practitioners, 10,000 Patients, 100,000 Encounters and 1,000,000 Observations, shaped like
the Synthea R4 resources in ../shared/data/synthea-r4-smart but with literal `Type/id`
references, so `telefhir load` stores them as PUTs (https://hl7.org/fhir/R4/nd-json.html).

    .venv/bin/python bench/search/generate.py [--out bench/search/data] [--scale 1.0]

`--scale 0.01` makes a 1 % set for trying the scripts. Same seed, same bytes.
"""

from __future__ import annotations

import argparse
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

SEED = 20261123
HERE = Path(__file__).resolve().parent
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
TAG = {"tag": [{"system": "https://telefhir.dev/bench", "code": "search-bench"}]}
OBS_FILES = 10  # Observation NDJSON files (100,000 lines each at scale 1)

FAMILY = (
    "Smith Smitham Smithson Smits Johnson Williams Brown Jones Garcia Miller Davis Rodriguez "
    "Martinez Hernandez Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee "
    "Perez Thompson White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King "
    "Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell "
    "Mitchell Carter Roberts Donnelly Kuhlman Gottlieb Prohaska Murray Windler Connelly Herman "
    "Lind Breitenberg Eichmann Cormier Hegmann Dach Kilback Hagenes Mohr Kihn Hintz Stark Kuphal "
    "Kutch Reinger Rath Skiles Little Bartoletti Dibbert Schmitt Schmidt Smyth Smithers "
    "Müller Muñoz Núñez Peña Castañeda Ibáñez Gómez Fernández Álvarez Jiménez Søndergaard "
    "Øster Ångström Björk Lefèvre Côté Gagné Bélanger Dubé Lévesque Hélène Özdemir Yılmaz Çelik "
    "Dvořák Novák Horváth Kovačević Łukasz Wójcik Nowak Zając O'Brien D'Angelo Van der Berg"
).split()
GIVEN_F = (
    "Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisbeth Berneice "
    "Fatima Gale Janene Kerry Mao Oralia Zoë Chloé Renée Inés María José Françoise Anaïs Søren "
    "Björn Åsa Ingrid Noémie Léa Marta Agnieszka Ewa Aylin Elif Sofía Lucía Valentina Ximena "
    "Amélie Maëlle Héloïse Dagný Ólöf"
).split()
GIVEN_M = (
    "James Robert John Michael David William Richard Joseph Thomas Charles Bill Brady Brendon "
    "Brett Darin Errol Fabian Floyd Harlan Hunter Jermaine Judson Lee Malcolm Marlin Maurice "
    "Ned Tyrell Zachary Noe José Andrés Jesús Ángel Raúl Iñaki Joël Jérôme François Søren "
    "Bjørn Håkon Lukáš Jiří Paweł Çağan Emre Mateo Thiago Matías"
).split()
CITIES = (
    ("Boston", "Massachusetts", "02101"), ("Leominster", "Massachusetts", "01420"),
    ("Worcester", "Massachusetts", "01601"), ("Springfield", "Massachusetts", "01101"),
    ("Holyoke", "Massachusetts", "01040"), ("Cambridge", "Massachusetts", "02138"),
)  # fmt: skip
STREETS = "Orchard Main Elm Oak Maple Cedar Pine Hospital Nikolaus Lakeview Harbor".split()

# (code, display, unit, low, high) of vital signs and laboratory tests, as Synthea writes them
VITALS = (
    ("8867-4", "Heart rate", "/min", 52.0, 120.0),
    ("9279-1", "Respiratory rate", "/min", 11.0, 22.0),
    ("8480-6", "Systolic Blood Pressure", "mm[Hg]", 95.0, 170.0),
    ("8462-4", "Diastolic Blood Pressure", "mm[Hg]", 55.0, 105.0),
    ("8302-2", "Body Height", "cm", 52.0, 190.0),
    ("29463-7", "Body Weight", "kg", 3.8, 130.0),
    ("39156-5", "Body Mass Index", "kg/m2", 14.3, 38.0),
    ("8331-1", "Oral temperature", "Cel", 36.1, 39.2),
    ("72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported", "{score}",
     0.0, 10.0),
    ("2708-6", "Oxygen saturation in Arterial blood", "%", 90.0, 100.0),
)  # fmt: skip
LABS = (
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 11.7, 17.4),
    ("787-2", "MCV [Entitic volume] by Automated count", "fL", 80.0, 94.6),
    ("785-6", "MCH [Entitic mass] by Automated count", "pg", 27.0, 33.0),
    ("786-4", "MCHC [Mass/volume] by Automated count", "g/dL", 33.0, 35.8),
    ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 153.1, 449.5),
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 3.8, 10.2),
    ("789-8", "Erythrocytes [#/volume] in Blood by Automated count", "10*6/uL", 3.9, 5.5),
    ("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count", "%", 35.2, 49.2),
    ("2093-3", "Total Cholesterol", "mg/dL", 160.1, 242.8),
    ("2571-8", "Triglycerides", "mg/dL", 101.6, 362.3),
    ("18262-6", "Low Density Lipoprotein Cholesterol", "mg/dL", 60.6, 141.0),
    ("2085-9", "High Density Lipoprotein Cholesterol", "mg/dL", 29.3, 79.8),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 5.8, 7.6),
    ("33914-3", "Estimated Glomerular Filtration Rate", "mL/min/{1.73_m2}", 86.4, 153.8),
    ("2339-0", "Glucose", "mg/dL", 64.3, 172.7),
    ("6299-2", "Urea Nitrogen", "mg/dL", 7.7, 19.3),
    ("38483-4", "Creatinine", "mg/dL", 0.6, 1.4),
    ("49765-1", "Calcium", "mg/dL", 8.6, 10.2),
    ("2947-0", "Sodium", "mmol/L", 136.5, 142.9),
    ("6298-4", "Potassium", "mmol/L", 3.8, 5.2),
)  # fmt: skip
ENCOUNTER_TYPES = (
    ("185349003", "Encounter for check up (procedure)", "AMB"),
    ("162673000", "General examination of patient (procedure)", "AMB"),
    ("185345009", "Encounter for symptom", "AMB"),
    ("50849002", "Emergency room admission (procedure)", "EMER"),
    ("183452005", "Emergency hospital admission (procedure)", "IMP"),
    ("390906007", "Follow-up encounter (procedure)", "AMB"),
)
OBS_PER_ENCOUNTER = 10
START = datetime(2015, 1, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)


def rid(rng: random.Random) -> str:
    """A random (seeded) UUID, as Synthea uses for ids."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def instant(t: datetime) -> str:
    """An R4 dateTime with seconds and a UTC offset."""
    return t.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def practitioner(rng: random.Random, pid: str) -> dict[str, Any]:
    """A Practitioner as Synthea writes one."""
    male = rng.random() < 0.5
    city, state, postal = rng.choice(CITIES)
    return {
        "resourceType": "Practitioner", "id": pid, "meta": TAG,
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi",
                        "value": str(rng.randrange(10**9, 10**10))}],
        "active": True,
        "name": [{"family": rng.choice(FAMILY),
                  "given": [rng.choice(GIVEN_M if male else GIVEN_F)], "prefix": ["Dr."]}],
        "address": [{"line": [f"{rng.randrange(1, 999)} HOSPITAL ROAD"], "city": city.upper(),
                     "state": "MA", "postalCode": postal, "country": "US"}],
        "gender": "male" if male else "female",
    }  # fmt: skip


def patient(rng: random.Random, pid: str, birth: date) -> dict[str, Any]:
    """A Patient as Synthea writes one (identifiers, name, telecom, address)."""
    r = rng.random()
    gender = "male" if r < 0.49 else "female" if r < 0.98 else rng.choice(["other", "unknown"])
    given = [rng.choice(GIVEN_M if gender == "male" else GIVEN_F)]
    if rng.random() < 0.3:
        given.append(rng.choice(GIVEN_M + GIVEN_F))
    city, state, postal = rng.choice(CITIES)
    res: dict[str, Any] = {
        "resourceType": "Patient", "id": pid, "meta": TAG,
        "identifier": [
            {"system": "https://github.com/synthetichealth/synthea", "value": pid},
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                  "code": "MR", "display": "Medical Record Number"}],
                      "text": "Medical Record Number"},
             "system": "http://hospital.smarthealthit.org", "value": pid},
        ],
        "name": [{"use": "official", "family": rng.choice(FAMILY), "given": given}],
        "telecom": [{"system": "phone", "value": f"555-{rng.randrange(100, 999)}-"
                     f"{rng.randrange(1000, 9999)}", "use": "home"}],
        "gender": gender,
        "birthDate": birth.isoformat(),
        "address": [{"line": [f"{rng.randrange(1, 999)} {rng.choice(STREETS)} Street"],
                     "city": city, "state": state, "postalCode": postal, "country": "US"}],
    }  # fmt: skip
    if rng.random() < 0.05:
        res["deceasedDateTime"] = instant(END - timedelta(days=rng.randrange(1, 3000)))
    return res


def encounter(
    rng: random.Random, eid: str, pid: str, prac: str, start: datetime
) -> dict[str, Any]:
    """An Encounter with a participant Practitioner, as Synthea writes one."""
    code, display, klass = rng.choice(ENCOUNTER_TYPES)
    end = start + timedelta(minutes=rng.choice((15, 30, 45, 60, 240)))
    return {
        "resourceType": "Encounter", "id": eid, "meta": TAG, "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": klass},
        "type": [{"coding": [{"system": "http://snomed.info/sct", "code": code,
                              "display": display}], "text": display}],
        "subject": {"reference": f"Patient/{pid}"},
        "participant": [{"individual": {"reference": f"Practitioner/{prac}"}}],
        "period": {"start": instant(start), "end": instant(end)},
    }  # fmt: skip


def observation(
    rng: random.Random, oid: str, pid: str, eid: str, when: datetime, test: tuple[Any, ...],
    category: str,
) -> dict[str, Any]:
    """A vital-sign or laboratory Observation with a UCUM valueQuantity."""
    code, display, unit, low, high = test
    value = round(rng.uniform(low, high), 1 if high > 20 else 2)
    return {
        "resourceType": "Observation", "id": oid, "meta": TAG, "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": category, "display": category}]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}],
                 "text": display},
        "subject": {"reference": f"Patient/{pid}"},
        "encounter": {"reference": f"Encounter/{eid}"},
        "effectiveDateTime": instant(when),
        "issued": instant(when + timedelta(minutes=rng.randrange(5, 180))),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }  # fmt: skip


def panel(rng: random.Random) -> list[tuple[tuple[Any, ...], str]]:
    """The tests of one encounter: all vital signs, or five vitals and five labs."""
    if rng.random() < 0.6:
        return [(t, "vital-signs") for t in VITALS]
    vitals = [VITALS[0], *rng.sample(VITALS[1:], 4)]  # heart rate is nearly always taken
    return [(t, "vital-signs") for t in vitals] + [
        (t, "laboratory") for t in rng.sample(LABS, OBS_PER_ENCOUNTER - 5)
    ]


def generate(
    out: Path, patients: int, encounters: int, practitioners: int
) -> dict[str, int]:
    """Write Practitioner, Patient, Encounter and Observation NDJSON files into `out`."""
    rng = random.Random(SEED)
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}

    def write(name: str, items: Iterator[dict[str, Any]]) -> None:
        n = 0
        with (out / name).open("wb") as f:
            for item in items:
                f.write(orjson.dumps(item) + b"\n")
                n += 1
        counts[name] = n

    prac_ids = [rid(rng) for _ in range(practitioners)]
    write("1-Practitioner.ndjson", (practitioner(rng, p) for p in prac_ids))

    pats: list[tuple[str, date]] = []
    for _ in range(patients):
        birth = date(1930, 1, 1) + timedelta(days=rng.randrange(0, 365 * 90 + 22))
        pats.append((rid(rng), birth))
    write("2-Patient.ndjson", (patient(rng, p, b) for p, b in pats))

    # encounters per patient: skewed (a few frequent visitors), exactly `encounters` in all
    weights = [rng.lognormvariate(0, 0.8) for _ in pats]
    owners = rng.choices(range(len(pats)), weights=weights, k=encounters)
    visits: list[tuple[str, str, datetime]] = []  # (encounter id, patient id, start)
    span = int((END - START).total_seconds())
    for owner in owners:
        pid, birth = pats[owner]
        born = datetime(birth.year, birth.month, birth.day, tzinfo=UTC)
        first = max(START, born)
        start = first + timedelta(seconds=rng.randrange(0, int((END - first).total_seconds())
                                                        if END > first else span))
        visits.append((rid(rng), pid, start))
    visits.sort(key=lambda v: v[2])
    # each patient has a few regular practitioners
    usual = {p: rng.sample(prac_ids, 3) for p, _ in pats}
    write(
        "3-Encounter.ndjson",
        (encounter(rng, e, p, rng.choice(usual[p]), s) for e, p, s in visits),
    )

    per_file = max(1, len(visits) // OBS_FILES)
    for k in range(OBS_FILES):
        chunk = visits[k * per_file : (k + 1) * per_file if k < OBS_FILES - 1 else len(visits)]

        def obs(chunk: list[tuple[str, str, datetime]] = chunk) -> Iterator[dict[str, Any]]:
            for e, p, s in chunk:
                for test, category in panel(rng):
                    yield observation(rng, rid(rng), p, e, s, test, category)

        write(f"4-Observation-{k:02d}.ndjson", obs())
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "data")
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args()
    s = args.scale
    counts = generate(args.out, max(1, int(10_000 * s)), max(1, int(100_000 * s)),
                      max(3, int(500 * s)))
    for name, n in counts.items():
        print(f"{n:>9,} {args.out / name}")
    print(f"{sum(counts.values()):>9,} resources")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
