from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/folds.smk"
include: "rules/models.smk"
include: "rules/teachers.smk"
include: "rules/heuristic.smk"
include: "rules/student.smk"
include: "rules/export.smk"
include: "rules/predict.smk"
include: "rules/kaggle.smk"
include: "rules/judge.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        plan.final_outputs(),
