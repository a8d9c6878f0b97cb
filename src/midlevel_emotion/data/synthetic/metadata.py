"""Made-up metadata of the synthetic corpus: sources, artists, titles, albums.

Soundtracks clips come in films of 2-5 excerpts by one composer; the other tracks belong to
bands of 2-6 tracks, or to artists with exactly one track (:data:`SINGLE_ARTIST_FRACTION`),
which the artist-disjoint A2Mid+ test split draws from.
"""

from __future__ import annotations

import numpy as np

SOURCES_OTHER = ("jamendo", "magnatagatune")
SOUNDTRACKS = "soundtracks"
SINGLE_ARTIST_FRACTION = 0.17  # of the non-Soundtracks tracks: artists with exactly one track (so the
# artist-disjoint A2Mid+ test split can reach 8 % of all clips when half are Soundtracks clips)

_FIRST = ("Ada", "Bruno", "Clara", "Dmitri", "Elena", "Felix", "Greta", "Hugo", "Ines", "Jonas",
          "Kira", "Lars", "Mina", "Nico", "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tara",
          "Ugo", "Vera", "Wim", "Xenia", "Yannick", "Zoe", "Amos", "Bea", "Cyril", "Dora")
_LAST = ("Abbott", "Berger", "Castell", "Dahl", "Eriksen", "Fontaine", "Gallo", "Hartmann",
         "Ivanov", "Jansen", "Koval", "Lindqvist", "Moreau", "Novak", "Olsen", "Petrov", "Quint",
         "Reyes", "Sato", "Thorne", "Ueda", "Vance", "Weber", "Xu", "Yilmaz", "Zanetti", "Arden",
         "Bloom", "Crane", "Duval")
_ADJ = ("Blue", "Silent", "Electric", "Hollow", "Golden", "Paper", "Velvet", "Northern", "Crimson",
        "Quiet", "Wandering", "Broken", "Distant", "Amber", "Lunar", "Rusty", "Glass", "Wild",
        "Falling", "Secret", "Pale", "Burning", "Frozen", "Little", "Cosmic", "Hidden", "Slow",
        "Bright", "Restless", "Open")
_NOUN = ("River", "Garden", "Engine", "Mirror", "Harbor", "Forest", "Signal", "Lantern", "Orchard",
         "Machine", "Island", "Window", "Tide", "Comet", "Valley", "Anchor", "Echo", "Meadow",
         "Station", "Horizon", "Feather", "Canyon", "Circuit", "Ocean", "Spiral", "Thunder",
         "Avenue", "Desert", "Glacier", "Parade")
_FILMS = ("The Last Harbor", "Night Train", "Glass Empire", "Silent Orchard", "Red Meridian",
          "The Paper Crown", "Winter Signal", "Blue Labyrinth", "Hollow Sky", "Iron Lullaby",
          "The Amber Coast", "Shadow Waltz", "Northern Lights", "The Hidden Valley", "Falling Comet")
#: Titles planted to exercise the readers: a comma inside a semicolon-separated field, and
#: non-ASCII characters (the files are UTF-8).
SPECIAL_TITLES = ("Rain, Again", "Café Ñandú – Übergang à Jyväskylä")


def _group_sizes(rng: np.random.Generator, n: int, low: int, high: int) -> list[int]:
    """Partition n into group sizes in [low, high], each drawn uniformly until n runs out.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the draws (one per group).
    n : int
        Total to partition; 0 gives no groups.
    low, high : int
        Bounds on every group size; ``high >= 2 * low - 1``, so that any ``n >= low`` can be split.

    Returns
    -------
    list of int
        Sizes that sum to ``n``, each in ``[low, high]``.

    Raises
    ------
    ValueError
        If ``0 < n < low`` (no partition exists) or ``high < 2 * low - 1``.
    """
    if high < 2 * low - 1:  # e.g. [3, 4] cannot make 5: the tail repair below needs the room
        raise ValueError(f"group sizes in [{low}, {high}] cannot partition every n >= {low}: "
                         "need high >= 2 * low - 1")
    if 0 < n < low:
        raise ValueError(f"cannot partition {n} into groups of {low} to {high}")
    sizes: list[int] = []
    left = n
    while left > 0:
        size = min(int(rng.integers(low, high + 1)), left)
        sizes.append(size)
        left -= size
    if sizes and sizes[-1] < low:  # the first group is >= low (as n >= low), so there is one before
        _repair_tail(sizes, low, high)
    return sizes


def _repair_tail(sizes: list[int], low: int, high: int) -> None:
    """Bring a short last group up to ``low`` in place, taking from the group before it.

    Merging the tail into the previous group, the simple fix, can overshoot ``high`` (5 + 1 = 6
    excerpts for a film promised 2-5); then the previous group lends the tail just what it lacks.
    Merging is kept where it fits, so the partitions that were already valid do not change.
    """
    tail = sizes.pop()  # first: `sizes[-2] += sizes.pop()` would index the list before the pop
    if sizes[-1] + tail <= high:
        sizes[-1] += tail
    else:  # sizes[-1] + tail > high >= 2 * low - 1, so the lender keeps at least low
        sizes[-1] -= low - tail
        sizes.append(low)


def _names(rng: np.random.Generator, n: int, first: tuple[str, ...], last: tuple[str, ...],
           fmt: str, taken: set[str]) -> list[str]:
    combos = [fmt.format(a, b) for a in first for b in last]
    order = rng.permutation(len(combos))
    names: list[str] = []
    k = 0
    while len(names) < n:
        base = combos[order[k % len(combos)]]
        name = base if k < len(combos) else f"{base} {k // len(combos) + 1}"
        k += 1
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def _metadata(rng: np.random.Generator, n_clips: int, soundtrack_song_ids: np.ndarray) -> dict[str, list[str]]:
    n_soundtracks = len(soundtrack_song_ids)
    is_soundtrack = np.zeros(n_clips, bool)
    is_soundtrack[soundtrack_song_ids - 1] = True
    number_of = np.zeros(n_clips, int)
    number_of[soundtrack_song_ids - 1] = np.arange(1, n_soundtracks + 1)
    other = np.flatnonzero(~is_soundtrack)  # row indices of the non-Soundtracks tracks

    sources = [""] * n_clips
    source_ids = [""] * n_clips
    artists = [""] * n_clips
    titles = [""] * n_clips
    albums = [""] * n_clips
    taken: set[str] = set()

    # Soundtracks: one composer per film, 2-5 excerpts per film (360 from 110 in the real set);
    # a corpus with a single Soundtracks clip (tiny test corpora) can only have a one-excerpt film.
    st_rows = soundtrack_song_ids - 1  # in Soundtracks-number order
    sizes = _group_sizes(rng, n_soundtracks, 2, 5) if n_soundtracks != 1 else [1]
    composers = _names(rng, len(sizes), _FIRST, _LAST, "{} {}", taken)
    start = 0
    for g, size in enumerate(sizes):
        film = _FILMS[g % len(_FILMS)] + ("" if g < len(_FILMS) else f" {g // len(_FILMS) + 1}")
        for k, row in enumerate(st_rows[start:start + size]):
            sources[row] = SOUNDTRACKS
            source_ids[row] = str(number_of[row])
            artists[row] = composers[g]
            titles[row] = f"{film}: Cue {k + 1}"
            albums[row] = f"{film} (Original Motion Picture Soundtrack)"
        start += size

    # The others: jamendo / magnatagatune, ~9 % by artists with exactly one track.
    n_other = len(other)
    n_single = int(round(SINGLE_ARTIST_FRACTION * n_other))
    if n_other - n_single == 1:  # a lone remaining track cannot form a multi-track artist
        n_single += 1
    sizes = [1] * n_single + _group_sizes(rng, n_other - n_single, 2, 6)
    bands = _names(rng, len(sizes), tuple(f"The {a}" for a in _ADJ), _NOUN, "{} {}s", taken)
    perm = other[rng.permutation(n_other)]
    start = 0
    title_pool = [f"{a} {b}" for a in _ADJ for b in _NOUN]
    title_pick = rng.integers(0, len(title_pool), size=n_other)
    for g, size in enumerate(sizes):
        source = SOURCES_OTHER[int(rng.integers(0, 2))]
        album_names = [f"{_ADJ[int(rng.integers(0, len(_ADJ)))]} {_NOUN[int(rng.integers(0, len(_NOUN)))]}"
                       for _ in range(2)]
        for row in perm[start:start + size]:
            sources[row] = source
            source_ids[row] = (str(int(rng.integers(100000, 1500000))) if source == "jamendo"
                               else str(int(rng.integers(1, 58000))))
            artists[row] = bands[g]
            albums[row] = album_names[int(rng.integers(0, 2))]
        start += size
    for k, row in enumerate(other):
        titles[row] = title_pool[title_pick[k]]
    # Plant the special titles on the first (lowest song_id) non-Soundtracks tracks.
    for title, row in zip(SPECIAL_TITLES, other):
        titles[row] = title
    return {"sources": sources, "source_ids": source_ids, "artists": artists, "titles": titles, "albums": albums}
