"""eolake tile service."""

from eolake_kit import serve
from eolake_tiles.settings import TilesSettings


def main() -> None:
    serve("eolake_tiles.app:create_app", TilesSettings())


if __name__ == "__main__":
    main()
