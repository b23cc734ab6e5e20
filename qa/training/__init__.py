"""Training the answer ranker: `qa train` regenerates the shipped model from public data (docs/training.md).

Each stage is one module, read in this order:

1. Data (`squad`, `sets`). SQuAD's training files teach the cross-encoder: a seeded draw of
   `TrainConfig.questions` from SQuAD v1.1 train, every unanswerable question of SQuAD 2.0 train, the
   development articles set aside for training, and (`--mix`) the sets beyond Wikipedia. The development
   files (`squad.split_articles`) give validation articles, which calibrate, and held-out articles, which
   are never read here.
2. Training groups (`groups`). Each question's answering sentence against hard negatives: the rest of its
   paragraph and its article's sentences that share the most words with it; a learned "no answer" option
   wins for unanswerable questions and for answerable ones asked without their paragraph. A share is posed
   as follow-ups ("When did it return?").
3. Cross-encoder (`model`, `loop`). All six layers of the bundled all-MiniLM-L6-v2 (word embeddings
   frozen) score (question, sentence [SEP] title) pairs with a listwise loss, and mark the short answer's
   first and last word piece. Progress with an ETA; a checkpoint every `checkpoint_minutes`.
4. Calibration (`examples`, `calibration`). The exported cross-encoder scores the validation candidates,
   found as answering finds them (`qa.candidates.find_candidates`), as single questions, follow-ups, and
   questions asked of the corpus without their article. Logistic layers give P(sentence answers), P(the
   document answers) with the refusal threshold and P(the short answer is right). Last, the answer's
   confidence, P(citation [1] answers), is fitted on the answering path itself: the validation questions
   asked over their whole corpus (`calibrate_confidence`; alone: `qa train --confidence-only`).
5. Export (`export`). ONNX with int8 weights (onnxruntime's dynamic quantization) and a manifest with the
   data files and their sha256, the seed, the configuration, the validation figures and the licence.

`run` holds the whole run (`train`, `recalibrate`); `config` its settings (`TrainConfig`). The command
line (`qa.commands.train`) turns flags into a `TrainConfig`; nothing here knows of argparse, and nothing
here imports evaluation. Needs torch and transformers (installed with sentence-transformers); answering
with the result needs neither.
"""

from .calibration import calibrate, calibrate_confidence, calibration_corpora, fit_first_stage
from .config import BASE_MODEL, SEED, TrainConfig
from .examples import Example, absent_examples, make_examples
from .export import LICENCE, export_onnx, figures_table, model_manifest
from .groups import Group, TrainingSentences, training_groups, training_questions
from .loop import Checkpoints, learning_rate_factor, questions_read_by, reading_point, train_encoder
from .model import batch_loss, build_encoder, model_weights
from .run import calibrate_model, recalibrate, train

__all__ = [
    "BASE_MODEL",
    "LICENCE",
    "SEED",
    "Checkpoints",
    "Example",
    "Group",
    "TrainConfig",
    "TrainingSentences",
    "absent_examples",
    "batch_loss",
    "build_encoder",
    "calibrate",
    "calibrate_confidence",
    "calibrate_model",
    "calibration_corpora",
    "export_onnx",
    "figures_table",
    "fit_first_stage",
    "learning_rate_factor",
    "make_examples",
    "model_manifest",
    "model_weights",
    "questions_read_by",
    "reading_point",
    "recalibrate",
    "train",
    "train_encoder",
    "training_groups",
    "training_questions",
]
