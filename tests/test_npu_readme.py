"""The inferred hardware rules are documented where people read them, and the documents follow
edgepack/npu/rules.py: a rule added, changed or dropped there fails here until the READMEs say so."""

from __future__ import annotations

from pathlib import Path

from edgepack.npu.rules import README_BEGIN, README_END, RULES, rules_summary_text, rules_text

ROOT = Path(__file__).parent.parent


def test_top_level_readme_lists_every_rule_with_its_evidence_and_nothing_else():
    text = (ROOT / "README.md").read_text()
    assert text.count(README_BEGIN) == 1 and text.count(README_END) == 1
    block = text.split(README_BEGIN, 1)[1].split(README_END, 1)[0].strip()
    assert block == rules_summary_text()
    for r in RULES.values():
        assert f"**{r.name}**: {r.statement} *Evidence:* {r.evidence}." in block


def test_npu_readme_lists_every_rule_with_source_and_evidence():
    text = (ROOT / "edgepack" / "npu" / "README.md").read_text()
    assert rules_text() in text
    assert text.count("- **") == len(RULES)
