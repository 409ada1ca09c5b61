"""Is a file that torch.save wrote still what was written? torch.save writes a zip archive, and a zip
records a CRC-32 of every entry as it writes it; torch.load never checks them, so a flipped or
zeroed block of a checkpoint loads without error and resumes a different run. Reading the archive
through once (about a second per gigabyte) checks every entry against its CRC."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

CHUNK = 1 << 20


def damage_in(path: Path) -> str | None:
    """Why the file is not the archive that was written (truncated, or an entry whose bytes no longer
    match the CRC recorded for them), or None when every entry checks out."""
    try:
        with zipfile.ZipFile(path) as archive:
            for entry in archive.infolist():
                crc = 0
                with archive.open(entry) as stream:  # (zipfile itself raises on a CRC mismatch at the end)
                    while chunk := stream.read(CHUNK):
                        crc = zlib.crc32(chunk, crc)
                if crc != entry.CRC:
                    return f"{entry.filename} does not match its recorded CRC"
    except zipfile.BadZipFile as error:
        return f"not a whole archive ({error})"
    except (OSError, EOFError, ValueError, zlib.error) as error:
        return f"unreadable ({error})"
    return None
