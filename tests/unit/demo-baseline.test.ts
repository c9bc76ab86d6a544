// The demo's classical spam baseline (demo/src/baseline.ts): multinomial naive Bayes over
// lower-cased words, checked against counts worked out by hand, and its scores on the shipped
// corpus, trained on the training split and measured on the test split as the page does.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { predictNaiveBayes, scores, trainNaiveBayes, words } from '../../demo/src/baseline.js';
import { parseDataFile } from '../../demo/src/datafile.js';

describe('naive Bayes baseline', () => {
  it('splits lower-cased words of any script, keeping apostrophes and digits', () => {
    expect(words("Subject: FREE Money!!! Don't wait, 100% 賺錢 http://x.to/a_b")).toEqual(['subject', 'free', 'money', "don't", 'wait', '100', '賺錢', 'http', 'x', 'to', 'a', 'b']);
  });

  it('computes Laplace-smoothed log likelihoods and log priors', () => {
    const nb = trainNaiveBayes(
      [
        { text: 'meeting today', label: 0 },
        { text: 'meeting notes', label: 0 },
        { text: 'free money free', label: 1 },
      ],
      2,
    );
    // Vocabulary: meeting, today, notes, free, money (5); ham has 4 words, spam 3.
    expect(nb.logPrior[0]).toBeCloseTo(Math.log(2 / 3), 12);
    expect(nb.logPrior[1]).toBeCloseTo(Math.log(1 / 3), 12);
    expect(nb.logLikelihood.get('meeting')![0]).toBeCloseTo(Math.log(3 / 9), 12);
    expect(nb.logLikelihood.get('meeting')![1]).toBeCloseTo(Math.log(1 / 8), 12);
    expect(nb.logLikelihood.get('free')![1]).toBeCloseTo(Math.log(3 / 8), 12);
    expect(predictNaiveBayes(nb, 'FREE money now')).toBe(1);
    expect(predictNaiveBayes(nb, 'notes of the meeting')).toBe(0);
    // Only unseen words: the prior decides.
    expect(predictNaiveBayes(nb, 'zzz')).toBe(0);
  });

  it('scores accuracy, precision and recall of the positive class', () => {
    expect(scores([1, 1, 0, 0, 1], [1, 0, 0, 1, 1], 1)).toEqual({ accuracy: 0.6, precision: 2 / 3, recall: 2 / 3, examples: 5 });
    expect(scores([0, 0], [0, 1], 1)).toEqual({ accuracy: 0.5, precision: 0, recall: 0, examples: 2 });
  });

  it('beats the majority class by far on the shipped corpus (train split → test split)', () => {
    const parsed = parseDataFile('spam-assassin.jsonl', readFileSync(new URL('../../demo/public/data/spam-assassin.jsonl', import.meta.url), 'utf8'));
    const rows = (split: string) => parsed.examples.filter((e) => e.split === split).map((e) => ({ text: e.text, label: e.label! }));
    const test = rows('test');
    const nb = trainNaiveBayes(rows('train'), 2);
    const s = scores(test.map((r) => predictNaiveBayes(nb, r.text)), test.map((r) => r.label), 1);
    const majority = test.filter((r) => r.label === 0).length / test.length;
    console.log(`[baseline] test accuracy ${(100 * s.accuracy).toFixed(1)}%, spam precision ${(100 * s.precision).toFixed(1)}%, recall ${(100 * s.recall).toFixed(1)}% (majority class ${(100 * majority).toFixed(1)}%)`);
    expect(s.examples).toBe(584);
    expect(s.accuracy).toBeGreaterThan(majority + 0.2);
  });
});
