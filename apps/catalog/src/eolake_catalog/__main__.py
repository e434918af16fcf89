from eolake_kit import serve

from eolake_catalog.settings import CatalogSettings


def main() -> None:
    serve("eolake_catalog.app:create_app", CatalogSettings())


if __name__ == "__main__":
    main()
