"""The thesaurus service's manifest: what the platform and every deployment target know of it."""

from eolake_spec.manifest import ServiceManifest

MANIFEST = ServiceManifest(
    name="thesaurus",
    title="Thesaurus",
    summary="SKOS vocabularies: Skosmos-compatible REST, autocomplete, expansion",
    path="/thesaurus",
    port=8085,
    settings="eolake_thesaurus.settings:ThesaurusSettings",
    prepare="eolake_thesaurus.prepare",
)
