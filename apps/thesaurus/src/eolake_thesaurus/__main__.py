from eolake_kit import serve
from eolake_thesaurus.settings import ThesaurusSettings


def main() -> None:
    serve("eolake_thesaurus.app:create_app", ThesaurusSettings())


if __name__ == "__main__":
    main()
