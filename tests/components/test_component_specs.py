"""Every component: built on the project image, documented, one file named after its function, and the source KFP
ships for it runs on its own (the launcher writes only the function's source to ephemeral_component.py: a default
that names a constant of the component's module fails there, and only there)."""

from pathlib import Path

import pytest
from kfp.dsl.python_component import PythonComponent

from fashionrec.checkout import load_pipeline_module, project_root
from fashionrec.config import PROJECT_IMAGE

COMPONENT_FILES = sorted(p.stem for p in (project_root() / "components").glob("*.py"))


@pytest.mark.parametrize("name", COMPONENT_FILES)
def test_a_component_file_holds_the_component_of_its_name(name: str) -> None:
    module = load_pipeline_module(f"components.{name}")
    component = getattr(module, name)
    assert isinstance(component, PythonComponent)
    assert component.component_spec.implementation.container.image == PROJECT_IMAGE
    assert component.python_func.__doc__ and len(component.python_func.__doc__) > 40
    assert (Path(__file__).parent / f"test_{name}.py").is_file(), f"components/{name}.py has no test of its own"


@pytest.mark.parametrize("name", COMPONENT_FILES)
def test_the_source_kfp_ships_for_a_component_defines_it_on_its_own(name: str) -> None:
    component = getattr(load_pipeline_module(f"components.{name}"), name)
    container = component.component_spec.implementation.container
    (source,) = [part for part in [*container.command, *(container.args or [])] if f"def {name}(" in part]
    namespace: dict[str, object] = {}
    exec(compile(source, "ephemeral_component.py", "exec"), namespace)  # what kfp.dsl.executor_main loads
    assert callable(namespace[name])
