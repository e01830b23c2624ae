"""Retrieval quality with the real embedder: 30 short documents on distinct topics, and 30
questions worded differently from their source. Recall@5 must be at least 0.9."""

from __future__ import annotations

import httpx

from tests.conftest import Accounts
from tests.rag.helpers import search, upload

# (file, text, question): the question avoids repeating the text's wording where it can.
CORPUS = [
    (
        "volcano.txt",
        "Mount Etna in Sicily erupts often; lava flows down its slopes from the magma chamber.",
        "Which Italian mountain regularly spews molten rock?",
    ),
    (
        "sourdough.txt",
        "Sourdough bread rises because of wild yeast and lactic acid bacteria in a flour starter.",
        "What makes naturally leavened loaves rise?",
    ),
    (
        "photosynthesis.txt",
        "Plants turn sunlight, water and carbon dioxide into glucose and oxygen in chloroplasts.",
        "How do green plants make sugar from light?",
    ),
    (
        "chess.txt",
        "In chess, castling moves the king two squares towards a rook, which jumps over it.",
        "Which board game move lets the king swap sides with a rook?",
    ),
    (
        "tides.txt",
        "Ocean tides are caused mainly by the gravitational pull of the Moon on the Earth's seas.",
        "Why does the sea level rise and fall twice a day?",
    ),
    (
        "bees.txt",
        "Honeybees perform a waggle dance to tell their hive mates where flowers with nectar are.",
        "How do hive insects share the location of food?",
    ),
    (
        "tcp.txt",
        "TCP opens a connection with a three-way handshake: SYN, SYN-ACK and ACK packets.",
        "How does a reliable network protocol start a session?",
    ),
    (
        "coffee.txt",
        "Espresso is brewed by forcing hot water through finely ground coffee at high pressure.",
        "How is a strong Italian coffee shot made?",
    ),
    (
        "marathon.txt",
        "A marathon is a running race of 42.195 kilometres, named after a Greek legend.",
        "How long is the classic footrace from ancient Greece?",
    ),
    (
        "rust.txt",
        "Iron rusts when it reacts with oxygen and moisture, forming reddish iron oxide.",
        "Why does steel turn orange and flaky when wet?",
    ),
    (
        "vaccines.txt",
        "Vaccines train the immune system to recognise a pathogen without causing the disease.",
        "How do immunisations protect people from infections?",
    ),
    (
        "jazz.txt",
        "Jazz grew in New Orleans from blues and ragtime, with improvisation at its heart.",
        "Where did the improvised music genre originate?",
    ),
    (
        "recycling.txt",
        "Aluminium cans can be recycled endlessly, saving most of the energy needed for new metal.",
        "Why is it worth recycling soda tins?",
    ),
    (
        "penguins.txt",
        "Emperor penguins breed in the Antarctic winter; males keep the egg warm on their feet.",
        "Which flightless birds incubate eggs on their feet in the polar cold?",
    ),
    (
        "inflation.txt",
        "Inflation is the rise of the general price level, which cuts what money can buy.",
        "What do economists call it when everything gets more expensive?",
    ),
    (
        "glaciers.txt",
        "Glaciers are slow rivers of ice that carve U-shaped valleys as they move downhill.",
        "What forms valleys shaped like the letter U?",
    ),
    (
        "sleep.txt",
        "During REM sleep the brain is very active and most vivid dreams occur.",
        "In which phase of the night do we dream the most?",
    ),
    (
        "compost.txt",
        "Compost forms when microbes break down kitchen scraps and leaves into rich humus.",
        "How do food peelings become garden soil?",
    ),
    (
        "satellites.txt",
        "Geostationary satellites orbit 35,786 km above the equator, matching Earth's rotation.",
        "At what altitude do communication satellites seem to hover in one spot?",
    ),
    (
        "origami.txt",
        "Origami is the Japanese art of folding a single sheet of paper into figures like cranes.",
        "What is the craft of making paper birds by folding called?",
    ),
    (
        "tea.txt",
        "Green tea leaves are steamed or pan-fired soon after picking to stop oxidation.",
        "Why does unoxidised tea keep its colour?",
    ),
    (
        "earthquakes.txt",
        "Earthquakes happen when tectonic plates slip suddenly along a fault, releasing energy.",
        "What makes the ground shake violently?",
    ),
    (
        "vitamins.txt",
        "Vitamin C deficiency causes scurvy, once common among sailors on long voyages.",
        "What illness did old-time sailors get from lacking fresh fruit?",
    ),
    (
        "bicycles.txt",
        "Bicycle gears let the rider trade pedalling speed for force when climbing hills.",
        "How do cyclists make going uphill easier?",
    ),
    (
        "printing.txt",
        "Gutenberg's movable type printing press spread books across Europe in the 15th century.",
        "Who made mass production of books possible in the Renaissance?",
    ),
    (
        "whales.txt",
        "Blue whales are the largest animals ever known, feeding almost only on tiny krill.",
        "What is the biggest creature on the planet and what does it eat?",
    ),
    (
        "passwords.txt",
        "Passwords should be stored as slow salted hashes such as argon2, never in plain text.",
        "How should a website keep user credentials safe in its database?",
    ),
    (
        "rainbows.txt",
        "A rainbow appears when sunlight is refracted and reflected inside raindrops.",
        "What causes the coloured arc in the sky after rain?",
    ),
    (
        "cheese.txt",
        "Cheese is made by curdling milk with rennet, then draining and ageing the curds.",
        "How is milk turned into a solid dairy product?",
    ),
    (
        "lighthouses.txt",
        "Lighthouses use Fresnel lenses to project a beam that ships can see from far away.",
        "How do coastal towers make their light visible to sailors at a distance?",
    ),
]


class TestRecall:
    async def test_recall_at_5_is_at_least_0_9(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        ada = await accounts.create()
        ids = {}
        for filename, text, _ in CORPUS:
            response = await upload(client, ada, filename, text)
            assert response.status_code == 201, response.text
            ids[filename] = response.json()["document"]["id"]
        misses = []
        for filename, _, question in CORPUS:
            hits = (await search(client, ada, question, limit=5)).json()["results"]
            if ids[filename] not in [h["document_id"] for h in hits]:
                misses.append((filename, question))
        recall = 1 - len(misses) / len(CORPUS)
        assert recall >= 0.9, misses
