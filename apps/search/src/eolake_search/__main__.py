from eolake_kit import serve
from eolake_search.settings import SearchSettings


def main() -> None:
    serve("eolake_search.app:create_app", SearchSettings())


if __name__ == "__main__":
    main()
