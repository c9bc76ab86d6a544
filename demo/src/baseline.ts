// The spam filter's classical baseline and the scores both it and the fine-tuned model report.
//
// Multinomial naive Bayes over lower-cased words with add-one (Laplace) smoothing, trained on the
// training split's whole mails: the textbook spam filter, which any fine-tuned model on the page
// must be compared with on the same split. It trains in a few hundred milliseconds on the shipped
// corpus. Written here rather than taken from npm: it is thirty lines, and the packages that offer
// it (natural, wink-naive-bayes-text-classifier) bring their own tokenisers and stemmers, which
// would change what is being compared and add a dependency for it.
//
// Invariants: prediction is a pure function of the training rows and the text; ties go to the
// lower class index; words never seen in training are skipped (they carry no evidence).

/** A labelled text, as the page's splits hold them. */
export interface LabelledText {
  text: string;
  label: number;
}

export interface NaiveBayes {
  classes: number;
  logPrior: number[];
  /** log P(word | class) for every training word, one entry per class. */
  logLikelihood: Map<string, Float64Array>;
}

/** Accuracy, and precision and recall of one class (spam), over a set of predictions. */
export interface Scores {
  accuracy: number;
  precision: number;
  recall: number;
  examples: number;
}

/** Lower-cased words: runs of letters, digits and apostrophes (any script). */
export function words(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? [];
}

export function trainNaiveBayes(rows: readonly LabelledText[], classes: number): NaiveBayes {
  const counts = new Map<string, Float64Array>();
  const totals = new Float64Array(classes);
  const docs = new Float64Array(classes);
  for (const { text, label } of rows) {
    docs[label]!++;
    for (const w of words(text)) {
      let c = counts.get(w);
      if (!c) counts.set(w, (c = new Float64Array(classes)));
      c[label]!++;
      totals[label]!++;
    }
  }
  const vocabulary = counts.size;
  const logLikelihood = new Map<string, Float64Array>();
  for (const [w, c] of counts) logLikelihood.set(w, c.map((n, k) => Math.log((n + 1) / (totals[k]! + vocabulary))));
  // A class with no training rows can never win (−Infinity prior) rather than divide by zero.
  const logPrior = [...docs].map((d) => Math.log(d / Math.max(1, rows.length)));
  return { classes, logPrior, logLikelihood };
}

export function predictNaiveBayes(model: NaiveBayes, text: string): number {
  const score = Float64Array.from(model.logPrior);
  for (const w of words(text)) {
    const l = model.logLikelihood.get(w);
    if (l) for (let k = 0; k < model.classes; k++) score[k]! += l[k]!;
  }
  let best = 0;
  for (let k = 1; k < model.classes; k++) if (score[k]! > score[best]!) best = k;
  return best;
}

/** Scores of predictions against labels; precision and recall are those of class `positive`. */
export function scores(predicted: readonly number[], labels: readonly number[], positive: number): Scores {
  let correct = 0;
  let tp = 0;
  let fp = 0;
  let fn = 0;
  predicted.forEach((p, i) => {
    const y = labels[i]!;
    if (p === y) correct++;
    if (p === positive && y === positive) tp++;
    else if (p === positive) fp++;
    else if (y === positive) fn++;
  });
  const n = predicted.length;
  // No positive predictions (or no positives): 0, as scikit-learn reports with zero_division=0.
  return { accuracy: n ? correct / n : 0, precision: tp + fp ? tp / (tp + fp) : 0, recall: tp + fn ? tp / (tp + fn) : 0, examples: n };
}
