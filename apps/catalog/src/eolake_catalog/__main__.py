from eolake_catalog.settings import CatalogSettings
from eolake_kit import serve


def main() -> None:
    serve("eolake_catalog.app:create_app", CatalogSettings())


if __name__ == "__main__":
    main()
